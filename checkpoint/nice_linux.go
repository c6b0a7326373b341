package checkpoint

import (
	"runtime"
	"syscall"
	"unsafe"
)

// lowPriority moves the calling goroutine to an OS thread of its own under
// SCHED_IDLE (falling back to nice 19) for the rest of its life; the thread
// ends with it. A background write then runs when training leaves a core idle
// and yields at once when it does not, instead of taking slices of a core that
// a parallel piece of the step is waiting on.
// Best effort: on failure the goroutine runs at normal priority.
func lowPriority() {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	const schedIdle = 5
	var param struct{ priority int32 }
	tid := syscall.Gettid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid), schedIdle, uintptr(unsafe.Pointer(&param))); errno != 0 {
		syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19)
	}
}
