package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var errNotFound = errors.New("executable file not found in $PATH")

// lookPath finds file in the workload's PATH (not the agent's). A name with a slash is used as is;
// execve reports what is wrong with it.
func lookPath(file, pathList string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		candidate := filepath.Join(dir, file)
		fi, err := os.Stat(candidate)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 != 0 {
			return candidate, nil
		}
		if firstErr == nil {
			firstErr = syscall.EACCES
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", errNotFound
}

// envValue returns the last value of key in a K=V list.
func envValue(env []string, key string) (string, bool) {
	prefix := key + "="
	for i := len(env) - 1; i >= 0; i-- {
		if strings.HasPrefix(env[i], prefix) {
			return env[i][len(prefix):], true
		}
	}
	return "", false
}
