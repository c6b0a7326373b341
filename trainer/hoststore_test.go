package trainer_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/gobackend"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/trainer"
)

// TestHostStoreStepsBitIdentical: three optimizer steps (two micro-batches
// each) with the host store give the same bits as the keep store (loss, grad
// norm, every gradient, the parameters after), for both recompute modes, and
// the store holds at most two layers on the device where keep holds them all.
func TestHostStoreStepsBitIdentical(t *testing.T) {
	const layers, steps = 6, 3
	for _, keep := range []bool{false, true} {
		type run struct {
			stats []trainer.StepStats
			grads []map[string][]float32
			final map[string][]float32
		}
		runWith := func(host bool) run {
			cfg := parityConfig(t, dtypes.Float32, 64, 2)
			cfg.Model.Layers = layers
			cfg.KeepAttention = keep
			tr, err := trainer.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if host {
				tr.Engine.Store = trainer.NewHostStore(tr.Backend().Compute, layers)
			}
			var r run
			for range steps {
				st, err := tr.Step(context.Background())
				if err != nil {
					t.Fatalf("keep attention %v, host %v: %v", keep, host, err)
				}
				r.stats = append(r.stats, st)
				r.grads = append(r.grads, flat32(tr.Grads()))
			}
			r.final = flat32(tr.Params.T)
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			return r
		}
		want, got := runWith(false), runWith(true)
		for i := range steps {
			w, g := want.stats[i], got.stats[i]
			if g.Loss != w.Loss || g.GradNorm != w.GradNorm {
				t.Errorf("keep attention %v, step %d: loss %v grad norm %v, keep store %v %v", keep, i+1, g.Loss, g.GradNorm, w.Loss, w.GradNorm)
			}
			for name, wg := range want.grads[i] {
				if !slices.Equal(got.grads[i][name], wg) {
					t.Errorf("keep attention %v, step %d: gradient %s differs from the keep store's", keep, i+1, name)
				}
			}
			// keep holds every layer at once; host the one worked on and the one coming back.
			if a, k := g.Memory.Activations, w.Memory.Activations; a <= 0 || a*layers > 2*k {
				t.Errorf("keep attention %v, step %d: host store peak %d bytes, keep store %d for %d layers: want at most 2 layers", keep, i+1, a, k, layers)
			}
		}
		t.Logf("keep attention %v: losses %v; activations peak: host %d bytes, keep %d", keep,
			[]float64{got.stats[0].Loss, got.stats[1].Loss, got.stats[2].Loss}, got.stats[0].Memory.Activations, want.stats[0].Memory.Activations)
		for name, w := range want.final {
			if !slices.Equal(got.final[name], w) {
				t.Errorf("keep attention %v: parameter %s after %d steps differs from the keep store's", keep, name, steps)
			}
		}
	}
}

func flat32[M ~map[string]*tensors.Tensor](m M) map[string][]float32 {
	out := map[string][]float32{}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out[name] = tensors.MustCopyFlatData[float32](m[name])
	}
	return out
}

func layerBytes(l int) int64 {
	var n int64
	for _, t := range someTensors(l) {
		n += t.ByteSize()
	}
	return n
}

func checkLayer(t *testing.T, s *trainer.HostStore, l int) {
	t.Helper()
	ts, err := s.Get(l)
	if err != nil {
		t.Fatalf("layer %d: %v", l, err)
	}
	want := someTensors(l)
	if len(ts) != len(want) {
		t.Fatalf("layer %d: %d tensors, want %d", l, len(ts), len(want))
	}
	for i := range ts {
		if !slices.Equal(tensors.MustCopyFlatData[float32](ts[i]), tensors.MustCopyFlatData[float32](want[i])) {
			t.Errorf("layer %d tensor %d: values changed", l, i)
		}
	}
}

// pollUntil polls cond until it holds, failing the test after 10 s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHostStoreOrderAndPrefetch: Put copies every layer but the last to host
// memory, Put of a layer waits for the one before, Get brings the layer below
// back in the background, values survive the round trip, a second step reuses
// the store, and Put of layer 0 starts over.
func TestHostStoreOrderAndPrefetch(t *testing.T) {
	backend := testBackend(t)
	s := trainer.NewHostStore(backend, 3)
	defer s.Close()
	for step := range 2 {
		for l := range 3 {
			ts := someTensors(l)
			for _, x := range ts { // on the device, as the pieces return them
				if err := x.MaterializeOnDevice(backend, true, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Put(l, ts); err != nil {
				t.Fatalf("step %d: put layer %d: %v", step, l, err)
			}
		}
		// Layers 0 and 1 reached the host before Put(2) returned; the last stays.
		if got, want := s.Bytes(), layerBytes(2); got != want {
			t.Errorf("step %d: after forward %d bytes on the device, want %d (the last layer)", step, got, want)
		}
		if got, want := s.HostBytes(), layerBytes(0)+layerBytes(1); got != want {
			t.Errorf("step %d: after forward %d bytes on the host, want %d", step, got, want)
		}
		checkLayer(t, s, 2)
		if got, want := s.Bytes(), layerBytes(1); got != want { // coming back
			t.Errorf("step %d: after Get(2) %d bytes on the device, want %d (layer 1)", step, got, want)
		}
		pollUntil(t, "layer 1 back on the device before Get(1)", func() bool { return s.HostBytes() == layerBytes(0) })
		checkLayer(t, s, 1)
		checkLayer(t, s, 0)
		if s.Bytes() != 0 || s.HostBytes() != 0 {
			t.Errorf("step %d: after backward the store holds %d bytes on the device, %d on the host", step, s.Bytes(), s.HostBytes())
		}
	}
	for _, l := range []int{0, 7, -1} {
		if _, err := s.Get(l); err == nil || !strings.Contains(err.Error(), "nothing stored") {
			t.Errorf("Get(%d) of a layer not stored: got %v", l, err)
		}
	}
	// An unfinished step (forward only) is dropped by the next one's Put(0).
	for l := range 2 {
		if err := s.Put(l, someTensors(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(0, someTensors(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(1); err == nil {
		t.Error("Get(1) after a new step's Put(0): want an error, layer 1 belongs to the step left unfinished")
	}
	checkLayer(t, s, 0)
}

// TestHostStoreFailedCopies: a copy that fails in the background is an error
// at the next Put or Get and at the Get of its layer, never a panic or a hang;
// a new step works again.
func TestHostStoreFailedCopies(t *testing.T) {
	t.Run("to host", func(t *testing.T) {
		s := trainer.NewHostStore(testBackend(t), 3)
		defer s.Close()
		bad := someTensors(0)
		bad[1].MustFinalizeAll() // a tensor that cannot be copied
		if err := s.Put(0, bad); err != nil {
			t.Fatalf("Put(0) returned before the copy: %v", err)
		}
		err := s.Put(1, someTensors(1))
		if err == nil || !strings.Contains(err.Error(), "layer 0") || !strings.Contains(err.Error(), "copy to host") {
			t.Fatalf("Put(1) after layer 0 failed to copy: got %v, want an error naming layer 0", err)
		}
		if _, err := s.Get(0); err == nil || !strings.Contains(err.Error(), "layer 0") {
			t.Fatalf("Get(0): got %v, want layer 0's copy error", err)
		}
		for l := range 3 { // a new step starts over
			if err := s.Put(l, someTensors(l)); err != nil {
				t.Fatalf("new step: put layer %d: %v", l, err)
			}
		}
		for _, l := range []int{2, 1, 0} {
			checkLayer(t, s, l)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Run("to device", func(t *testing.T) {
		b, err := gobackend.New("")
		if err != nil {
			t.Fatal(err)
		}
		s := trainer.NewHostStore(b, 3)
		defer s.Close()
		for l := range 3 {
			if err := s.Put(l, someTensors(l)); err != nil {
				t.Fatal(err)
			}
		}
		b.Finalize() // the device is gone: nothing can come back
		if _, err := s.Get(2); err != nil {
			t.Fatalf("Get(2), kept on the device: %v", err)
		}
		_, err = s.Get(1)
		if err == nil || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), "bring back") {
			t.Fatalf("Get(1): got %v, want an error naming layer 1", err)
		}
		if _, err = s.Get(0); err == nil || !strings.Contains(err.Error(), "layer 0") {
			t.Fatalf("Get(0): got %v, want an error naming layer 0", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close after the errors were returned: %v", err)
		}
	})
}
