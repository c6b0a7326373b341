package checkpoint_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/checkpoint"
)

// BenchmarkSave times Save of a 675 MB checkpoint (a 225 MB float32 model and
// AdamW's two moments) against the speed a checkpoint write is held to: the same
// bytes written to one file, sequentially, then fsynced. Each iteration does
// both, in alternating order, so the two see the same disk; ratio is
// save-MB/s / plain-MB/s.
//
//	go test ./checkpoint -run x -bench Save -benchtime 10x
func BenchmarkSave(b *testing.B) {
	s, total := benchSnapshot(b)
	var all []*tensors.Tensor
	for _, t := range s.Params.T {
		all = append(all, t)
	}
	for _, t := range s.Optim {
		all = append(all, t)
	}
	root := b.TempDir()
	ckpt, plain := filepath.Join(root, "ckpt"), filepath.Join(root, "plain.bin")
	var saveTime, plainTime time.Duration
	for i := 0; b.Loop(); i++ {
		for j := range 2 { // alternate which goes first
			start := time.Now()
			if (i+j)%2 == 0 {
				plainWrite(b, plain, all)
				plainTime += time.Since(start)
			} else {
				s.Step = i
				if _, err := checkpoint.Save(ckpt, s); err != nil {
					b.Fatal(err)
				}
				saveTime += time.Since(start)
			}
			// Each write starts with the same free space: on a thin-provisioned disk,
			// or one mounted with discard, writing blocks never written (or just
			// discarded) is slower than reusing ones, and that would dominate.
			b.StopTimer()
			os.Remove(plain)
			os.RemoveAll(ckpt)
			b.StartTimer()
		}
	}
	mb := float64(total) * float64(b.N) / 1e6
	b.ReportMetric(mb/saveTime.Seconds(), "save-MB/s")
	b.ReportMetric(mb/plainTime.Seconds(), "plain-MB/s")
	b.ReportMetric(plainTime.Seconds()/saveTime.Seconds(), "ratio")
}

// plainWrite writes the tensors' bytes to path and fsyncs it.
func plainWrite(b *testing.B, path string, all []*tensors.Tensor) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range all {
		var werr error
		if err := t.ConstBytes(func(d []byte) { _, werr = f.Write(d) }); err != nil || werr != nil {
			b.Fatal(err, werr)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// benchSnapshot is the snapshot BenchmarkSave writes, and the bytes of its checkpoint.
func benchSnapshot(b *testing.B) (*checkpoint.Snapshot, int64) {
	b.Helper()
	cfg := tinyConfig
	cfg.Vocab, cfg.Dim, cfg.Layers, cfg.Heads, cfg.KVHeads, cfg.MLPDim = 32000, 512, 8, 8, 4, 1408
	s := snapshot(b, cfg, 0)
	dir, err := checkpoint.Save(b.TempDir(), s)
	if err != nil {
		b.Fatal(err)
	}
	c, err := checkpoint.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(dir)
	return s, c.Bytes()
}
