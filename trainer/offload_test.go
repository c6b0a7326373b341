package trainer_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/trainer"
)

// TestOffloadGradientsBitIdentical: the loss and every gradient of a step with
// offload none, host and disk are the same bits, for both recompute modes, and
// disk leaves no spill file behind.
func TestOffloadGradientsBitIdentical(t *testing.T) {
	for _, keep := range []bool{false, true} {
		var want map[string][]float32
		var wantLoss float64
		for _, offload := range []string{"none", "host", "disk"} {
			cfg := parityConfig(t, dtypes.Float32, 64, 2)
			cfg.Model.Layers = 4
			cfg.KeepAttention = keep
			cfg.Offload, cfg.OffloadDir = offload, filepath.Join(t.TempDir(), "offload")
			tr, err := trainer.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			loss, _, err := tr.Gradients(context.Background())
			if err != nil {
				t.Fatalf("offload %s: %v", offload, err)
			}
			got := map[string][]float32{}
			for name, g := range tr.Grads() {
				got[name] = tensors.MustCopyFlatData[float32](g)
			}
			if want == nil {
				want, wantLoss = got, loss
			} else {
				if loss != wantLoss {
					t.Errorf("keep attention %v, offload %s: loss %v, none %v", keep, offload, loss, wantLoss)
				}
				for name, w := range want {
					if !slices.Equal(got[name], w) {
						t.Errorf("keep attention %v, offload %s: %s differs from none", keep, offload, name)
					}
				}
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _ := filepath.Glob(filepath.Join(cfg.OffloadDir, "*")); len(left) > 0 {
				t.Errorf("offload %s left %v", offload, left)
			}
		}
	}
}

func someTensors(layer int) []*tensors.Tensor {
	v := make([]float64, 64*8)
	for i := range v {
		v[i] = float64(layer*1000 + i)
	}
	return []*tensors.Tensor{host.FromFloat64(dtypes.Float32, v, 64, 8), host.FromFloat64(dtypes.Float32, v[:64], 64)}
}

// TestDiskStoreRefusesLostOrChangedFiles: a spill file deleted or changed
// under the run is an error naming it, never tensors of the wrong values.
func TestDiskStoreRefusesLostOrChangedFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string) error
		want   string
	}{
		{"deleted", os.Remove, "spill file lost"},
		{"truncated", func(p string) error { return os.Truncate(p, 100) }, "changed under the run"},
		{"flipped byte", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			return os.WriteFile(p, b, 0o644)
		}, "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := trainer.NewDiskStore(t.TempDir(), 3)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for l := range 3 {
				if err := s.Put(l, someTensors(l)); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(s.Dir, "layer-0000.act")
			waitFile(t, path)
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			for _, l := range []int{2, 1} { // the last layer (kept in memory), then layer 1 (read back)
				if _, err := s.Get(l); err != nil {
					t.Fatalf("layer %d: %v", l, err)
				}
			}
			_, err = s.Get(0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "layer 0") {
				t.Fatalf("got %v, want an error with %q naming layer 0", err, tc.want)
			}
		})
	}
}

// waitFile polls until the spill file at path has all its bytes.
func waitFile(t *testing.T, path string) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() == (64*8+64)*4 {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s never written", path)
		}
	}
}

// TestOffloadUnwritableFolder: a spill folder that cannot be made is refused
// when the trainer starts, naming it.
func TestOffloadUnwritableFolder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := parityConfig(t, dtypes.Float32, 64, 1)
	cfg.Offload, cfg.OffloadDir = "disk", filepath.Join(file, "offload")
	_, err := trainer.New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "offload") || !strings.Contains(err.Error(), file) {
		t.Fatalf("got %v, want an offload error naming %s", err, file)
	}
}

// TestOffloadDiskFull: spilling into a file system with no room left fails the
// step with the disk's error, not a hang or a wrong result. Needs root (a
// 64 KiB tmpfs); skipped otherwise.
func TestOffloadDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	cfg := parityConfig(t, dtypes.Float32, 64, 1)
	cfg.Model.Layers, cfg.Model.Dim, cfg.SeqLen = 4, 128, 256 // 128 KiB per layer input
	cfg.Offload, cfg.OffloadDir = "disk", filepath.Join(dir, "offload")
	tr, err := trainer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, _, err = tr.Gradients(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("got %v, want the disk-full error", err)
	}
}
