package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/trainer"
)

// runCkpt measures what checkpoints cost: steps with a checkpoint every step
// against steps without, in alternating blocks of one run; and checkpoint.Save's
// write throughput against a plain sequential write (then fsync) of the same
// number of bytes to the same disk, alternating too.
func runCkpt(recompute string, seqLen, rounds, block, blockQ, blockK, layers int, dir string) error {
	cfg, cleanup, err := benchConfig(recompute, seqLen, 2*rounds*block+1, 0, blockQ, blockK, layers)
	if err != nil {
		return err
	}
	defer cleanup()
	if dir == "" {
		dir = "."
	}
	if dir, err = os.MkdirTemp(dir, "stepbench-ckpt-"); err != nil { // on that disk
		return err
	}
	defer os.RemoveAll(dir)
	t, err := trainer.New(cfg, nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := t.Step(ctx); err != nil { // warm-up: compilation
		return err
	}
	w, err := checkpoint.NewWriter(filepath.Join(dir, "ckpt"), checkpoint.Policy{KeepLast: 2})
	if err != nil {
		return err
	}
	var plain, with []float64        // seconds per block
	var snapSecs []float64           // of which taking the snapshot (on the step's goroutine)
	var bufs [2]*checkpoint.Snapshot // in turn, as trainer.Run does
	nsnap := 0
	var submitSecs []float64 // blocked in Submit: the previous write not done
	for r := range rounds {
		for _, ckpt := range []bool{r%2 == 1, r%2 == 0} { // alternate which comes first
			start := time.Now()
			for range block {
				if _, err := t.Step(ctx); err != nil {
					return err
				}
				if ckpt {
					t0 := time.Now()
					s, err := t.SnapshotInto(bufs[nsnap%2])
					if err != nil {
						return err
					}
					snapSecs = append(snapSecs, time.Since(t0).Seconds())
					bufs[nsnap%2] = s
					nsnap++
					t1 := time.Now()
					if err := w.Submit(s); err != nil {
						return err
					}
					submitSecs = append(submitSecs, time.Since(t1).Seconds())
				}
			}
			if ckpt {
				// Steady state: the write in flight overlaps the next step in training,
				// so the block ends with its last step; the write finishes untimed,
				// before the next block.
				with = append(with, time.Since(start).Seconds())
				if err := w.Wait(); err != nil {
					return err
				}
			} else {
				plain = append(plain, time.Since(start).Seconds())
			}
		}
	}
	fmt.Fprintf(os.Stderr, "stepbench: blocks of %d steps: without checkpoints %v s, with one every step %v s; snapshot %.4f s, submit %.4f s (median), %.4f s (max)\n", block, plain, with, median(snapSecs), median(submitSecs), slices.Max(submitSecs))

	// Throughput: the same snapshot saved, against the same bytes written plainly,
	// alternating which goes first; each output is removed (untimed) before the
	// next write, so both write into space freed the same way.
	s, err := t.Snapshot()
	if err != nil {
		return err
	}
	var saveBps, plainBps []float64
	var size int64
	for r := range 2 * rounds {
		saveFirst := r%2 == 0
		for i := range 2 {
			if (i == 0) == saveFirst {
				s.Step = 1_000_000 + r
				start := time.Now()
				path, err := checkpoint.Save(filepath.Join(dir, "tput"), s)
				if err != nil {
					return err
				}
				secs := time.Since(start).Seconds()
				if size, err = dirBytes(path); err != nil {
					return err
				}
				saveBps = append(saveBps, float64(size)/secs)
				if err := os.RemoveAll(filepath.Join(dir, "tput")); err != nil {
					return err
				}
				continue
			}
			if size == 0 { // the plain write needs the checkpoint's size: measure it once
				path, err := checkpoint.Save(filepath.Join(dir, "size"), s)
				if err != nil {
					return err
				}
				if size, err = dirBytes(path); err != nil {
					return err
				}
				os.RemoveAll(filepath.Join(dir, "size"))
			}
			secs, err := plainWrite(filepath.Join(dir, "plain"), size)
			if err != nil {
				return err
			}
			plainBps = append(plainBps, float64(size)/secs)
		}
	}
	ratios := make([]float64, len(with))
	for i := range with {
		ratios[i] = with[i] / plain[i]
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"impl": "torus-ckpt", "seq_len": seqLen, "block_steps": block,
		"block_seconds_without": plain, "block_seconds_with": with,
		"step_ratio_ckpt_every_step": median(ratios), "snapshot_seconds_median": median(snapSecs), "step_ratios": ratios,
		"checkpoint_bytes": size,
		"save_bytes_per_s": median(saveBps), "plain_write_bytes_per_s": median(plainBps),
		"throughput_ratio": median(saveBps) / median(plainBps), "dir": dir,
	})
}

// dirBytes is the size of a saved checkpoint, its manifest included.
func dirBytes(dir string) (int64, error) {
	c, err := checkpoint.Open(dir)
	if err != nil {
		return 0, err
	}
	return c.Bytes(), nil
}

// plainWrite writes n bytes to path in 1 MiB writes, fsyncs and closes it: the
// disk's sequential write rate, as a program that only writes would see it.
func plainWrite(path string, n int64) (float64, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds(), os.Remove(path)
}
