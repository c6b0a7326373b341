package device_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/torusml/torus/device"
)

// fakeMachine lays out files under a temporary root and answers Getenv and Glob
// as a machine with them would: /opt/... and /dev/... are looked up under root.
type fakeMachine struct {
	root string
	env  map[string]string
}

func newFake(t *testing.T, files ...string) *fakeMachine {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeMachine{root: root, env: map[string]string{}}
}

func (m *fakeMachine) options() device.Options {
	return device.Options{
		Env: func(k string) string { return m.env[k] },
		Glob: func(pattern string) ([]string, error) {
			if strings.HasPrefix(pattern, m.root) {
				return filepath.Glob(pattern)
			}
			return filepath.Glob(filepath.Join(m.root, pattern))
		},
	}
}

func (m *fakeMachine) path(p string) string { return filepath.Join(m.root, p) }

const jaxPlugin = "opt/torch/.venv/lib/python3.12/site-packages/jax_plugins/xla_cuda13/xla_cuda_plugin.so"

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    []string
		env      map[string]string // values may hold ROOT, replaced by the fake root
		backend  string
		kind     string
		plugin   string // relative to the root
		whyHas   string
		errHas   []string
		notFound bool
	}{
		{name: "cpu asked", backend: "cpu", kind: "cpu", whyHas: "backend cpu"},
		{name: "go is cpu", backend: "go", kind: "cpu"},
		{name: "auto without plugin", backend: "auto", kind: "cpu", whyHas: "no CUDA plugin found"},
		{name: "auto with plugin, no GPU", files: []string{jaxPlugin}, backend: "auto", kind: "cpu", whyHas: "no NVIDIA GPU"},
		// The /dev/nvidia0 of the fake root stands for the GPU.
		{name: "auto with JAX plugin and GPU", files: []string{jaxPlugin, "dev/nvidia0"}, backend: "auto", kind: "cuda", plugin: jaxPlugin, whyHas: "auto"},
		{name: "cuda from TORUS_PJRT_PLUGIN", files: []string{"p/my.so", jaxPlugin}, env: map[string]string{"TORUS_PJRT_PLUGIN": "ROOT/p/my.so"}, backend: "cuda", kind: "cuda", plugin: "p/my.so"},
		{name: "TORUS_PJRT_PLUGIN missing is not passed over", files: []string{jaxPlugin}, env: map[string]string{"TORUS_PJRT_PLUGIN": "ROOT/nothing.so"}, backend: "cuda",
			errHas: []string{"TORUS_PJRT_PLUGIN=", "nothing.so is not a file"}, notFound: true},
		{name: "cuda from PJRT_PLUGIN_LIBRARY_PATH", files: []string{"b/pjrt_c_api_cuda_plugin.so"}, env: map[string]string{"PJRT_PLUGIN_LIBRARY_PATH": "ROOT/a:ROOT/b"}, backend: "cuda", kind: "cuda", plugin: "b/pjrt_c_api_cuda_plugin.so"},
		{name: "cuda nowhere names every place", env: map[string]string{"PJRT_PLUGIN_LIBRARY_PATH": "ROOT/a", "PATH": "ROOT/usr/bin"}, files: []string{"usr/bin/python3"}, backend: "cuda",
			errHas: []string{"backend cuda: no CUDA PJRT plugin found", "TORUS_PJRT_PLUGIN (unset)", "a/pjrt_c_api_cuda_plugin.so", "usr/lib/python3*", "jax_plugins/xla_cuda*"}, notFound: true},
		{name: "unknown name", backend: "tpu", errHas: []string{`unknown backend "tpu"`, "auto, cpu, cuda"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFake(t, tc.files...)
			for k, v := range tc.env {
				m.env[k] = strings.ReplaceAll(v, "ROOT", m.root)
			}
			c, err := device.Resolve(tc.backend, m.options())
			if len(tc.errHas) > 0 {
				if err == nil {
					t.Fatalf("Resolve(%q) = %+v, want an error", tc.backend, c)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				if tc.notFound != errors.Is(err, device.ErrNoPlugin) {
					t.Errorf("errors.Is(err, ErrNoPlugin) = %v, want %v", !tc.notFound, tc.notFound)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Kind != tc.kind {
				t.Errorf("kind %q, want %q (%s)", c.Kind, tc.kind, c.Why)
			}
			if tc.plugin != "" && c.Plugin != m.path(tc.plugin) {
				t.Errorf("plugin %q, want %q", c.Plugin, m.path(tc.plugin))
			}
			if !strings.Contains(c.Why, tc.whyHas) {
				t.Errorf("why %q does not say %q", c.Why, tc.whyHas)
			}
		})
	}
}

func TestOpenCPU(t *testing.T) {
	b, err := device.Open("cpu", device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind != "cpu" || b.Compute == nil || !strings.Contains(b.Describe(), "pure-Go") {
		t.Errorf("Open(cpu) = %+v (%s)", b, b.Describe())
	}
}
