module cleanroom/agent

go 1.19
