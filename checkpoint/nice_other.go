//go:build !linux

package checkpoint

// lowPriority: per-thread priorities are Linux's; elsewhere writes run as they are.
func lowPriority() {}
