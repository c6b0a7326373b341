package device

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// fakeGPU is one GPU of fakeNVML: its memory in use and its compute processes
// can change between calls.
type fakeGPU struct {
	name  string
	total uint64
	used  uint64
	util  int // -1: not supported
	procs []nvml.ProcessInfo
}

func fakeNVML(gpus ...*fakeGPU) *mock.Interface {
	devs := make([]nvml.Device, len(gpus))
	for i, g := range gpus {
		devs[i] = &mock.Device{
			GetNameFunc: func() (string, nvml.Return) { return g.name, nvml.SUCCESS },
			GetUUIDFunc: func() (string, nvml.Return) { return "GPU-" + strings.Repeat(string(rune('a'+i)), 8), nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: g.total, Used: g.used, Free: g.total - g.used}, nvml.SUCCESS
			},
			GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
				if g.util < 0 {
					return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
				}
				return nvml.Utilization{Gpu: uint32(g.util)}, nvml.SUCCESS
			},
			GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) { return g.procs, nvml.SUCCESS },
		}
	}
	return &mock.Interface{
		InitFunc:                       func() nvml.Return { return nvml.SUCCESS },
		SystemGetDriverVersionFunc:     func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
		SystemGetCudaDriverVersionFunc: func() (int, nvml.Return) { return 12040, nvml.SUCCESS },
		DeviceGetCountFunc:             func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

const gib = 1 << 30

func TestListGPUs(t *testing.T) {
	lib := fakeNVML(
		&fakeGPU{name: "NVIDIA H200", total: 141 * gib, used: 2 * gib, util: 37},
		&fakeGPU{name: "NVIDIA A100-SXM4-80GB", total: 80 * gib, util: -1},
	)
	gpus, err := listGPUs(lib)
	if err != nil {
		t.Fatal(err)
	}
	want := []GPU{
		{Index: 0, Name: "NVIDIA H200", UUID: "GPU-aaaaaaaa", MemoryTotal: 141 * gib, MemoryUsed: 2 * gib, MemoryFree: 139 * gib, UtilizationGPU: 37, Driver: "550.54.15", CUDA: "12.4"},
		{Index: 1, Name: "NVIDIA A100-SXM4-80GB", UUID: "GPU-bbbbbbbb", MemoryTotal: 80 * gib, MemoryFree: 80 * gib, UtilizationGPU: -1, Driver: "550.54.15", CUDA: "12.4"},
	}
	if len(gpus) != len(want) {
		t.Fatalf("%d GPUs, want %d", len(gpus), len(want))
	}
	for i := range want {
		if gpus[i] != want[i] {
			t.Errorf("GPU %d:\n got %+v\nwant %+v", i, gpus[i], want[i])
		}
	}
}

func TestSampler(t *testing.T) {
	const pid = 4242
	g := &fakeGPU{name: "NVIDIA H200", total: 141 * gib, used: 10 * gib, util: 90}
	s, err := newSampler(fakeNVML(&fakeGPU{name: "other"}, g), 1, pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.GPU.Name != "NVIDIA H200" {
		t.Errorf("sampler of %q, want the H200", s.GPU.Name)
	}
	steps := []struct {
		procs    []nvml.ProcessInfo
		used     uint64 // the whole GPU's
		want     Sample
		describe string
	}{
		{nil, 1 * gib, Sample{MemoryUsed: 1 * gib, MemoryPeak: 1 * gib, Utilization: 90}, "not listed yet: the GPU's figure"},
		{[]nvml.ProcessInfo{{Pid: 7, UsedGpuMemory: 5 * gib}, {Pid: pid, UsedGpuMemory: 3 * gib}}, 9 * gib,
			Sample{MemoryUsed: 3 * gib, MemoryPeak: 3 * gib, Own: true, Utilization: 90}, "listed: its own"},
		{[]nvml.ProcessInfo{{Pid: pid, UsedGpuMemory: 2 * gib}}, 9 * gib,
			Sample{MemoryUsed: 2 * gib, MemoryPeak: 3 * gib, Own: true, Utilization: 90}, "less: the peak stays"},
		{[]nvml.ProcessInfo{{Pid: pid, UsedGpuMemory: math.MaxUint64}}, 4 * gib,
			Sample{MemoryUsed: 4 * gib, MemoryPeak: 4 * gib, Utilization: 90}, "not available: the GPU's figure"},
	}
	for _, st := range steps {
		g.procs, g.used = st.procs, st.used
		got, err := s.Sample()
		if err != nil {
			t.Fatalf("%s: %v", st.describe, err)
		}
		if got != st.want {
			t.Errorf("%s: got %+v, want %+v", st.describe, got, st.want)
		}
	}
	if _, err := newSampler(fakeNVML(g), 3, pid); err == nil || !strings.Contains(err.Error(), "no GPU 3") {
		t.Errorf("sampler of a GPU that is not there: %v", err)
	}
}

func TestProcessMemory(t *testing.T) {
	g := &fakeGPU{name: "NVIDIA H200", procs: []nvml.ProcessInfo{{Pid: 1, UsedGpuMemory: 5}, {Pid: 2, UsedGpuMemory: 7}}}
	d, _ := fakeNVML(g).DeviceGetHandleByIndex(0)
	if n, err := processMemory(d, 0, 2); err != nil || n != 7 {
		t.Errorf("pid 2: %d, %v; want 7", n, err)
	}
	if _, err := processMemory(d, 0, 3); !errors.Is(err, ErrNotListed) {
		t.Errorf("pid 3: %v, want ErrNotListed", err)
	}
}

// On a machine without the driver every entry point says so, wrapping
// ErrNoDriver with the reason, and none panics; with one, they answer.
func TestRealNVML(t *testing.T) {
	gpus, err := GPUs()
	if errors.Is(err, ErrNoDriver) {
		if !strings.HasPrefix(err.Error(), "no NVIDIA driver: ") || len(err.Error()) <= len("no NVIDIA driver: ") {
			t.Errorf("error without a reason: %q", err)
		}
		if _, err2 := NewSampler(0); !errors.Is(err2, ErrNoDriver) {
			t.Errorf("NewSampler: %v, want ErrNoDriver", err2)
		}
		if _, err2 := ProcessMemory(0, 1); !errors.Is(err2, ErrNoDriver) {
			t.Errorf("ProcessMemory: %v, want ErrNoDriver", err2)
		}
		t.Logf("no driver here: %v", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gpus {
		t.Logf("GPU %d: %s, %d of %d bytes used, %d%%, driver %s, CUDA %s", g.Index, g.Name, g.MemoryUsed, g.MemoryTotal, g.UtilizationGPU, g.Driver, g.CUDA)
		if g.Name == "" || g.MemoryTotal == 0 || g.MemoryUsed > g.MemoryTotal {
			t.Errorf("GPU %d: %+v", g.Index, g)
		}
	}
	if len(gpus) > 0 {
		s, err := NewSampler(0)
		if err != nil {
			t.Fatal(err)
		}
		sm, err := s.Sample()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sample of GPU 0: %+v", sm)
	}
}

func TestVisibleGPU(t *testing.T) {
	for _, tc := range []struct {
		ordinal int
		visible string
		want    int
		err     string
	}{
		{0, "", 0, ""},
		{2, "", 2, ""},
		{0, "3", 3, ""},
		{1, "3, 1", 1, ""},
		{2, "3,1", 0, "no device 2"},
		{0, "MIG-abc", 0, "MIG"},
	} {
		got, err := VisibleGPU(tc.ordinal, tc.visible)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("VisibleGPU(%d, %q): error %v, want one naming %q", tc.ordinal, tc.visible, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("VisibleGPU(%d, %q) = %d, %v; want %d", tc.ordinal, tc.visible, got, err, tc.want)
		}
	}
	gpus := []GPU{{Index: 0, UUID: "GPU-5c3e11"}, {Index: 1, UUID: "GPU-5c3f22"}}
	if i, err := uuidIndex(gpus, "GPU-5c3f", "GPU-5c3f"); err != nil || i != 1 {
		t.Errorf("unique prefix: %d, %v", i, err)
	}
	if _, err := uuidIndex(gpus, "GPU-5c3", "GPU-5c3"); err == nil {
		t.Error("an ambiguous prefix was accepted")
	}
	if _, err := uuidIndex(gpus, "GPU-99", "GPU-99"); err == nil {
		t.Error("an unknown UUID was accepted")
	}
}

func TestPeakFLOPs(t *testing.T) {
	for _, tc := range []struct {
		name, dtype string
		want        float64
	}{
		{"NVIDIA H200", "bfloat16", 989e12},
		{"NVIDIA H200", "tf32", 494e12},
		{"NVIDIA H100 80GB HBM3", "bf16", 989e12},
		{"NVIDIA H100 PCIe", "bfloat16", 756e12},
		{"NVIDIA H100 NVL", "bfloat16", 835e12},
		{"NVIDIA A100-SXM4-80GB", "bfloat16", 312e12},
		{"NVIDIA A100-PCIE-40GB", "tf32", 156e12},
		{"NVIDIA L40S", "float16", 362e12},
		{"NVIDIA GeForce RTX 4090", "bfloat16", 165e12},
		{"NVIDIA H200", "float32", 67e12},
		{"NVIDIA H200", "float64", 0},
		{"NVIDIA L40", "bfloat16", 0},
		{"Tesla T4", "bfloat16", 0},
	} {
		got, ok := PeakFLOPs(tc.name, tc.dtype)
		if got != tc.want || ok != (tc.want > 0) {
			t.Errorf("PeakFLOPs(%q, %q) = %g, %v; want %g", tc.name, tc.dtype, got, ok, tc.want)
		}
	}
}
