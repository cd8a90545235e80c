/** Largest YAML file Cleanroom reads: policies and configs are small; a huge one is a mistake or an attack. */
export const MAX_YAML_BYTES = 1024 * 1024;
