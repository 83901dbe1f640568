package agent

import "syscall"

// sysProcAttr puts a stage in a process group of its own, so a Ctrl-C at the
// agent's terminal reaches the agent alone and the agent stops its stages in
// order; and asks the kernel to send the stage SIGTERM if the agent dies
// without doing so. (Linux sends it when the thread that started the child
// exits; Go keeps its threads for the life of the process unless a goroutine
// locked to one ends, which the agent never does.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
