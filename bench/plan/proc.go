package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// watch polls, until the returned function is called, the peak RSS (VmHWM) of
// every `torus worker` process started by pid, by rank, and whether any spill
// file (trainer.DiskStore's RUN/offload/rank-NN/layer-*.act) appeared.
func watch(pid int, runDir string) func() (map[int]int64, bool) {
	peaks := map[int]int64{}
	spilled := false
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, child := range children(pid) {
				if rank, ok := workerRank(child); ok {
					peaks[rank] = max(peaks[rank], vmHWM(child))
				}
			}
			if !spilled {
				matches, _ := filepath.Glob(filepath.Join(runDir, "offload", "*", "layer-*.act"))
				spilled = len(matches) > 0
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() (map[int]int64, bool) {
		close(stop)
		<-done
		return peaks, spilled
	}
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, child)
			}
		}
	}
	return out
}

// workerRank is the --rank of a `torus worker` process.
func workerRank(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(string(b), "\x00")
	if len(args) < 2 || args[1] != "worker" {
		return 0, false
	}
	for i, a := range args {
		if a == "--rank" && i+1 < len(args) {
			r, err := strconv.Atoi(args[i+1])
			return r, err == nil
		}
	}
	return 0, false
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
