package device

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
	"github.com/gomlx/go-xla/compute/xla"
)

// Backend is an opened compute backend and what was chosen.
//
// Hand GoMLX Compute, never the Backend itself: GoMLX ties every tensor to the
// backend value it was made on, and a wrapper is another value.
type Backend struct {
	Compute compute.Backend
	Kind    string // "cpu" or "cuda"
	Plugin  string // the PJRT plugin file (cuda only)
	// Why says how the choice was made, for the first log line ("auto: no GPU").
	Why string
}

// Options are the knobs of Open.
type Options struct {
	// Preallocate lets XLA reserve most of the GPU's memory up front (its
	// default in JAX). Off by default here: several workers may share one GPU.
	Preallocate bool
	// TF32 lets float32 matmuls on the GPU run in TF32 (10-bit mantissa): faster,
	// but a float32 run would no longer match the CPU's. Off unless asked for
	// (a bfloat16 model's matmuls are bf16 anyway).
	TF32 bool
	// Env and Glob stand in for os.Getenv and filepath.Glob in tests; nil means
	// the real ones.
	Env  func(string) string
	Glob func(string) ([]string, error)
}

// Names are the accepted backend names. "go" is the old name of "cpu".
var Names = []string{"auto", "cpu", "cuda"}

// Choice is which backend a name resolves to on this machine, before opening it.
type Choice struct {
	Kind   string // "cpu" or "cuda"
	Plugin string // the CUDA PJRT plugin file
	Why    string // "backend cuda (auto)", "backend cpu (auto: no CUDA plugin found)"
}

// Resolve says which backend a name means here: "cpu" (also "go"), "cuda", or
// "auto" (cuda when a CUDA plugin and a GPU are found, else cpu). "cuda" where
// no plugin is found is an error naming every place searched.
func Resolve(name string, o Options) (Choice, error) {
	switch name {
	case "cpu", "go":
		return Choice{Kind: "cpu", Why: "backend cpu"}, nil
	case "", "auto":
		plugin, _, err := FindCUDAPlugin(o)
		switch {
		case err != nil:
			return Choice{Kind: "cpu", Why: "backend cpu (auto: no CUDA plugin found)"}, nil
		case !HasGPU(o):
			return Choice{Kind: "cpu", Why: "backend cpu (auto: CUDA plugin " + plugin + " but no NVIDIA GPU device)"}, nil
		}
		return Choice{Kind: "cuda", Plugin: plugin, Why: "backend cuda (auto)"}, nil
	case "cuda":
		plugin, _, err := FindCUDAPlugin(o)
		if err != nil {
			return Choice{}, fmt.Errorf("backend cuda: %w", err)
		}
		return Choice{Kind: "cuda", Plugin: plugin, Why: "backend cuda"}, nil
	}
	return Choice{}, fmt.Errorf("unknown backend %q (one of %s)", name, strings.Join(Names, ", "))
}

// Open opens the backend a name resolves to (see Resolve).
func Open(name string, o Options) (*Backend, error) {
	c, err := Resolve(name, o)
	if err != nil {
		return nil, err
	}
	if c.Kind == "cuda" {
		return openCUDA(c.Plugin, o, c.Why)
	}
	return openCPU(c.Why)
}

// CPU opens the pure-Go backend (what tests and calibration use).
func CPU() (*Backend, error) { return openCPU("backend cpu") }

func openCPU(why string) (*Backend, error) {
	b, err := gobackend.New("")
	if err != nil {
		return nil, fmt.Errorf("go backend: %w", err)
	}
	return &Backend{Compute: b, Kind: "cpu", Why: why}, nil
}

func openCUDA(plugin string, o Options, why string) (*Backend, error) {
	env := o.env()
	// go-xla looks for NVIDIA's libraries beside the plugin's folder and warns when
	// they are one level further up, as in a Python environment; the plugin's own
	// RPATH finds them there, and cudaDataDir tells XLA where ptxas and libdevice are.
	os.Setenv("GOPJRT_CUDA_CHECKS", "0")
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	if dir := cudaDataDir(plugin, o); dir != "" && !strings.Contains(env("XLA_FLAGS"), "xla_gpu_cuda_data_dir") {
		os.Setenv("XLA_FLAGS", strings.TrimSpace(env("XLA_FLAGS")+" --xla_gpu_cuda_data_dir="+dir))
	}
	config := plugin
	if !o.Preallocate {
		config += ",preallocate=false"
	}
	if !o.TF32 {
		config += ",tf32=false"
	}
	b, err := xla.NewWithOptions(config, nil)
	if err != nil {
		return nil, fmt.Errorf("backend cuda: plugin %s: %w", plugin, err)
	}
	if b.NumDevices() < 1 {
		b.Finalize()
		return nil, fmt.Errorf("backend cuda: plugin %s sees no device", plugin)
	}
	return &Backend{Compute: b, Kind: "cuda", Plugin: plugin, Why: why}, nil
}

// Describe is the backend in one line: what it is, on what, and why.
func (b *Backend) Describe() string {
	if b.Kind == "cuda" {
		return fmt.Sprintf("%s: %s (PJRT plugin %s)", b.Why, b.Compute.DeviceDescription(0), b.Plugin)
	}
	return b.Why + ": GoMLX's pure-Go backend"
}

// ErrNoPlugin is what FindCUDAPlugin returns (wrapped, naming the places
// searched) when no CUDA PJRT plugin is found.
var ErrNoPlugin = errors.New("no CUDA PJRT plugin found")

// FindCUDAPlugin looks for a CUDA PJRT plugin, in order: the file TORUS_PJRT_PLUGIN
// names; pjrt_c_api_cuda_plugin.so in a folder of PJRT_PLUGIN_LIBRARY_PATH; the
// plugin of a JAX CUDA install (jax_plugins/xla_cuda*/xla_cuda_plugin.so) in the
// Python environment of any python3 on PATH or of /opt/*/.venv. It returns the
// plugin and every place it looked.
func FindCUDAPlugin(o Options) (plugin string, searched []string, err error) {
	env, glob := o.env(), o.glob()
	if f := env("TORUS_PJRT_PLUGIN"); f != "" {
		if isFile(f) {
			return f, []string{"TORUS_PJRT_PLUGIN=" + f}, nil
		}
		// Named explicitly: do not look elsewhere and run on something else.
		return "", []string{"TORUS_PJRT_PLUGIN=" + f}, fmt.Errorf("%w: TORUS_PJRT_PLUGIN=%s is not a file", ErrNoPlugin, f)
	}
	searched = append(searched, "TORUS_PJRT_PLUGIN (unset)")
	if p := env("PJRT_PLUGIN_LIBRARY_PATH"); p != "" {
		for _, dir := range filepath.SplitList(p) {
			f := filepath.Join(dir, "pjrt_c_api_cuda_plugin.so")
			searched = append(searched, f)
			if isFile(f) {
				return f, searched, nil
			}
		}
	} else {
		searched = append(searched, "PJRT_PLUGIN_LIBRARY_PATH (unset)")
	}
	for _, root := range pythonRoots(env, glob) {
		pattern := filepath.Join(root, "lib", "python3*", "*-packages", "jax_plugins", "xla_cuda*", "xla_cuda_plugin.so") // site- or Debian's dist-
		searched = append(searched, pattern)
		if m, _ := glob(pattern); len(m) > 0 {
			return m[len(m)-1], searched, nil // the newest CUDA (xla_cuda13 sorts after xla_cuda12)
		}
	}
	return "", searched, fmt.Errorf("%w; searched: %s", ErrNoPlugin, strings.Join(searched, ", "))
}

// pythonRoots are the environments whose site-packages may hold JAX: the
// prefix of each python3 on PATH (bin/..) and /opt/*/.venv.
func pythonRoots(env func(string) string, glob func(string) ([]string, error)) []string {
	var roots []string
	seen := map[string]bool{}
	add := func(r string) {
		if r = filepath.Clean(r); !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	for _, dir := range filepath.SplitList(env("PATH")) {
		py := filepath.Join(dir, "python3")
		if !isFile(py) {
			continue
		}
		add(filepath.Dir(dir))
		if real, err := filepath.EvalSymlinks(py); err == nil { // a venv's python3 links to the base
			add(filepath.Dir(filepath.Dir(real)))
		}
	}
	venvs, _ := glob("/opt/*/.venv")
	for _, v := range venvs {
		add(v)
	}
	return roots
}

// cudaDataDir is the folder of NVIDIA's wheels beside a JAX plugin that has
// bin/ptxas and nvvm/libdevice (what --xla_gpu_cuda_data_dir wants), or "".
func cudaDataDir(plugin string, o Options) string {
	site := filepath.Dir(filepath.Dir(filepath.Dir(plugin))) // site-packages/jax_plugins/xla_cuda13/x.so
	for _, pattern := range []string{"nvidia/cu*", "nvidia/cuda_nvcc"} {
		dirs, _ := o.glob()(filepath.Join(site, pattern))
		for _, d := range dirs {
			if isFile(filepath.Join(d, "bin", "ptxas")) {
				return d
			}
		}
	}
	return ""
}

// HasGPU reports whether an NVIDIA GPU device file is present.
func HasGPU(o Options) bool {
	m, _ := o.glob()("/dev/nvidia[0-9]*")
	return len(m) > 0
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func (o Options) env() func(string) string {
	if o.Env != nil {
		return o.Env
	}
	return os.Getenv
}

func (o Options) glob() func(string) ([]string, error) {
	if o.Glob != nil {
		return o.Glob
	}
	return filepath.Glob
}
