package device

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// What NVML (the NVIDIA driver's management library, libnvidia-ml.so.1, opened
// with dlopen at the first call) says of this machine's GPUs. Every function
// here is safe for concurrent use; on a machine without the driver each returns
// an error wrapping ErrNoDriver, and none panics.

// ErrNoDriver is returned, wrapped with the reason ("libnvidia-ml.so.1: cannot
// open shared object file"), when NVML cannot be loaded or initialised.
var ErrNoDriver = errors.New("no NVIDIA driver")

// ErrNotListed is returned by ProcessMemory when the process is not in the
// GPU's list of compute processes: it holds no memory there, or it runs in a
// PID namespace of its own (a container), where NVML's host PIDs are not its.
var ErrNotListed = errors.New("not in NVML's compute processes")

// GPU is one GPU as NVML reports it now.
type GPU struct {
	Index       int    `json:"index"` // NVML's (PCI bus order)
	Name        string `json:"name"`  // "NVIDIA H200"
	UUID        string `json:"uuid"`  // "GPU-5c3e..."
	MemoryTotal uint64 `json:"memory_total_bytes"`
	MemoryUsed  uint64 `json:"memory_used_bytes"` // by every process, and the driver's reserve
	MemoryFree  uint64 `json:"memory_free_bytes"`
	// UtilizationGPU is the percent of the last sample period (1/6 s to 1 s) in
	// which a kernel ran; -1 where the GPU does not report it (a MIG slice).
	UtilizationGPU int    `json:"utilization_gpu"`
	Driver         string `json:"driver"` // "550.54.15"
	CUDA           string `json:"cuda"`   // the newest CUDA the driver supports, "12.4"
}

// nvmlState is the process's one NVML session: initialised at the first call
// and held until the process exits. Shutting it down and initialising it again
// would dlclose and reopen the library under symbols the process has already
// bound, and nvmlInit costs up to a second on a machine of eight GPUs; NVML
// needs no shutdown before exit.
var nvmlState struct {
	mu   sync.Mutex
	done bool
	lib  nvml.Interface
	err  error // the first initialisation's failure, kept: a driver does not appear while a process runs
}

// newNVML makes the library handle; tests put a fake here.
var newNVML = func() nvml.Interface { return nvml.New() }

const nvmlLibrary = "libnvidia-ml.so.1"

// nvmlLib returns the initialised library, initialising it at the first call.
func nvmlLib() (nvml.Interface, error) {
	s := &nvmlState
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		lib := newNVML()
		if ret := lib.Init(); ret != nvml.SUCCESS {
			s.err = fmt.Errorf("%w: %s", ErrNoDriver, initFailure(ret))
		} else {
			s.lib = lib
		}
	}
	return s.lib, s.err
}

// initFailure says why nvmlInit failed. go-nvml reports only "library not
// found" when the dlopen fails; the loader's own message says why.
func initFailure(ret nvml.Return) string {
	if ret != nvml.ERROR_LIBRARY_NOT_FOUND {
		return "nvmlInit: " + nvml.ErrorString(ret)
	}
	lib := dl.New(nvmlLibrary, dl.RTLD_LAZY|dl.RTLD_LOCAL)
	if err := lib.Open(); err != nil {
		return err.Error()
	}
	_ = lib.Close()
	return nvmlLibrary + " found but not loaded by go-nvml"
}

// GPUs lists this machine's GPUs: every one NVML sees (CUDA_VISIBLE_DEVICES
// does not apply to NVML). A machine with the driver but no GPU gives an empty
// list and no error.
func GPUs() ([]GPU, error) {
	lib, err := nvmlLib()
	if err != nil {
		return nil, err
	}
	return listGPUs(lib)
}

func listGPUs(lib nvml.Interface) ([]GPU, error) {
	driver, _ := lib.SystemGetDriverVersion()
	var cuda string
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		cuda = fmt.Sprintf("%d.%d", v/1000, v%1000/10) // 12040 is 12.4
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml: device count: %s", nvml.ErrorString(ret))
	}
	gpus := make([]GPU, 0, n)
	for i := range n {
		d, err := handle(lib, i)
		if err != nil {
			return nil, err
		}
		g := GPU{Index: i, Driver: driver, CUDA: cuda, UtilizationGPU: utilization(d)}
		if g.Name, ret = d.GetName(); ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d: name: %s", i, nvml.ErrorString(ret))
		}
		g.UUID, _ = d.GetUUID()
		m, ret := d.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml: GPU %d (%s): memory: %s", i, g.Name, nvml.ErrorString(ret))
		}
		g.MemoryTotal, g.MemoryUsed, g.MemoryFree = m.Total, m.Used, m.Free
		gpus = append(gpus, g)
	}
	return gpus, nil
}

func handle(lib nvml.Interface, index int) (nvml.Device, error) {
	d, ret := lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml: GPU %d: %s", index, nvml.ErrorString(ret))
	}
	return d, nil
}

// utilization is the GPU's busy percent, or -1 where it is not reported.
func utilization(d nvml.Device) int {
	u, ret := d.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		return -1
	}
	return int(u.Gpu)
}

// ProcessMemory is the device memory the process pid holds on GPU index (NVML's
// index), from the GPU's list of compute processes. A process that is not
// listed gives an error wrapping ErrNotListed.
func ProcessMemory(index, pid int) (uint64, error) {
	lib, err := nvmlLib()
	if err != nil {
		return 0, err
	}
	d, err := handle(lib, index)
	if err != nil {
		return 0, err
	}
	return processMemory(d, index, pid)
}

func processMemory(d nvml.Device, index, pid int) (uint64, error) {
	procs, ret := d.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("nvml: GPU %d: compute processes: %s", index, nvml.ErrorString(ret))
	}
	var used uint64
	found := false
	for _, p := range procs {
		// UsedGpuMemory is NVML_VALUE_NOT_AVAILABLE where the driver cannot
		// attribute memory (Windows WDDM, some vGPUs): as good as not listed.
		if int(p.Pid) == pid && p.UsedGpuMemory != math.MaxUint64 {
			used += p.UsedGpuMemory
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("nvml: GPU %d: pid %d: %w", index, pid, ErrNotListed)
	}
	return used, nil
}

// VisibleGPU is the NVML index of the GPU that CUDA numbers ordinal when
// CUDA_VISIBLE_DEVICES is visible ("" when unset): a worker given
// CUDA_VISIBLE_DEVICES=3 computes on its device 0, which NVML calls 3.
// Entries are indices or GPU UUIDs (or unique prefixes of them, "GPU-5c3e").
// CUDA numbers devices fastest first and NVML by PCI bus; on a machine of one
// GPU model the two agree.
func VisibleGPU(ordinal int, visible string) (int, error) {
	if strings.TrimSpace(visible) == "" {
		return ordinal, nil
	}
	entries := strings.Split(visible, ",")
	if ordinal < 0 || ordinal >= len(entries) {
		return 0, fmt.Errorf("CUDA_VISIBLE_DEVICES=%s has no device %d", visible, ordinal)
	}
	e := strings.TrimSpace(entries[ordinal])
	if i, err := strconv.Atoi(e); err == nil {
		return i, nil
	}
	if !strings.HasPrefix(e, "GPU-") {
		return 0, fmt.Errorf("CUDA_VISIBLE_DEVICES=%s: entry %q is neither an index nor a GPU UUID (MIG slices are not supported)", visible, e)
	}
	gpus, err := GPUs()
	if err != nil {
		return 0, err
	}
	return uuidIndex(gpus, e, visible)
}

func uuidIndex(gpus []GPU, prefix, visible string) (int, error) {
	found := -1
	for _, g := range gpus {
		if strings.HasPrefix(g.UUID, prefix) {
			if found >= 0 {
				return 0, fmt.Errorf("CUDA_VISIBLE_DEVICES=%s: %q names more than one GPU", visible, prefix)
			}
			found = g.Index
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("CUDA_VISIBLE_DEVICES=%s: no GPU has the UUID %q", visible, prefix)
	}
	return found, nil
}
