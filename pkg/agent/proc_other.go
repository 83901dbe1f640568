//go:build unix && !linux

package agent

import "syscall"

// sysProcAttr puts a stage in a process group of its own, so a Ctrl-C at the
// agent's terminal reaches the agent alone and the agent stops its stages in
// order. Only Linux can also tie the stage's life to the agent's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
