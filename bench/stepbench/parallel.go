package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/torusml/torus/launch"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// workerResult is what each worker of a parallel run measured.
type workerResult struct {
	Rank        int                     `json:"rank"`
	StepSeconds []float64               `json:"step_seconds"`
	WaitSeconds []float64               `json:"wait_seconds"` // blocked on communication, per step
	WaitKinds   []map[string]float64    `json:"wait_kinds"`   // the same, by what it waited for
	BytesSent   []int64                 `json:"bytes_sent"`   // per step
	CPUSeconds  []float64               `json:"cpu_seconds"`  // CPU time the process used, per step
	Balance     []parallel.BalanceStats `json:"balance"`      // what the balancer moved, per step
	Held        []bool                  `json:"held"`         // per step: balancing held (--balance alternate)
	TLS         []bool                  `json:"tls"`          // per step: over TLS (--tls)
	// --tls alternate: a step's bytes moved alone, over plaintext and TLS in turn.
	TransferSeconds []float64      `json:"transfer_seconds,omitempty"`
	TransferCPU     []float64      `json:"transfer_cpu_seconds,omitempty"`
	TransferTLS     []bool         `json:"transfer_tls,omitempty"`
	PeakRSS         int64          `json:"peak_rss_bytes"`
	Memory          trainer.Memory `json:"memory"` // of the last step
}

// runWorker is one rank of a 2-worker job: it listens, learns its peer from the
// launcher (stdin), trains, and writes its measurements.
func runWorker(rank int, result, recompute, balance string, seqLen, steps, warmup, blockQ, blockK, layers int) error {
	cfg, cleanup, err := benchConfig(recompute, seqLen, steps, warmup, blockQ, blockK, layers)
	if err != nil {
		return err
	}
	defer cleanup()
	// One listener, two under --tls alternate (plaintext's, TLS's: see tls.go).
	var lns []net.Listener
	var addrs []string
	for range 1 + b2i(tlsMode == "alternate") {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns, addrs = append(lns, ln), append(addrs, ln.Addr().String())
	}
	fmt.Printf("%s%s\n", launch.ListenPrefix, strings.Join(addrs, ","))
	line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
	if err != nil {
		return err
	}
	ctx := context.Background()
	tr, err := workerTransport(ctx, rank, line, lns)
	if err != nil {
		return err
	}
	defer tr.Close()
	sw, _ := tr.(*switchTransport)
	mesh, err := parallel.NewMesh(tr.Size(), 1, tr.Size())
	if err != nil {
		return err
	}
	d := &trainer.Dist{T: tr, Mesh: mesh, Strategy: "ring"}
	if balance == "adaptive" || balance == "alternate" {
		d.Balance = &parallel.Balancer{}
	}
	t, err := trainer.New(cfg, d)
	if err != nil {
		return err
	}
	res := workerResult{Rank: rank}
	for i := range warmup + steps {
		if dir := os.Getenv("STEPBENCH_WORKER_PROFILE"); dir != "" && i == warmup { // the timed steps
			stop, err := startProfile(filepath.Join(dir, fmt.Sprintf("rank%d.prof", rank)))
			if err != nil {
				return err
			}
			defer stop()
		}
		held := balance == "alternate" && i >= warmup && (i-warmup)%2 == 1 // the same steps on every rank
		if sw != nil {
			sw.use(tlsStep(i, warmup)) // the same steps on every rank
		}
		if d.Balance != nil {
			d.Balance.Hold(held)
		}
		wait0, kinds0, sent0, cpu0, bal0 := d.Wait.Seconds(), d.Wait.Kinds(), tr.Stats().BytesSent, cpuSeconds(), d.Balance.Stats()
		st, err := t.Step(ctx)
		if err != nil {
			return err
		}
		if sw != nil && rank == 0 {
			fmt.Fprintf(os.Stderr, "stepbench: step %d of %d (%s): %.3f s\n", i+1, warmup+steps,
				map[bool]string{false: "plaintext", true: "TLS"}[tlsStep(i, warmup)], st.StepSeconds)
		}
		if i >= warmup {
			res.StepSeconds = append(res.StepSeconds, st.StepSeconds)
			res.WaitSeconds = append(res.WaitSeconds, d.Wait.Seconds()-wait0)
			kinds := d.Wait.Kinds()
			for k, v := range kinds0 {
				kinds[k] -= v
			}
			res.WaitKinds = append(res.WaitKinds, kinds)
			res.BytesSent = append(res.BytesSent, tr.Stats().BytesSent-sent0)
			res.CPUSeconds = append(res.CPUSeconds, cpuSeconds()-cpu0)
			res.Balance = append(res.Balance, balanceDiff(d.Balance.Stats(), bal0))
			res.Held = append(res.Held, held)
			res.TLS = append(res.TLS, tlsMode == "on" || sw != nil && tlsStep(i, warmup))
			res.Memory = st.Memory
		}
	}
	if sw != nil && len(res.BytesSent) > 0 {
		if res.TransferSeconds, res.TransferCPU, res.TransferTLS, err = measureTransfer(ctx, sw, res.BytesSent[len(res.BytesSent)-1], 8); err != nil {
			return fmt.Errorf("transfers: %w", err)
		}
	}
	res.PeakRSS = trainer.PeakRSS()
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(result, b, 0o644)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cpuSeconds is the CPU time (user and system) this process has used so far.
// A rank whose step took longer than its CPU time was kept off its core by
// other processes; one that needed more CPU time than its peer for the same
// work ran slower (where the VM does not account steal time, as here, time the
// host takes the vCPU away counts as CPU time).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// balanceDiff is what the balancer did between two readings of its stats.
func balanceDiff(a, b parallel.BalanceStats) parallel.BalanceStats {
	return parallel.BalanceStats{Calls: a.Calls - b.Calls, FwdGiven: a.FwdGiven - b.FwdGiven, FwdTaken: a.FwdTaken - b.FwdTaken,
		BwdGiven: a.BwdGiven - b.BwdGiven, BwdTaken: a.BwdTaken - b.BwdTaken, BwdGivingCalls: a.BwdGivingCalls - b.BwdGivingCalls,
		Changes: a.Changes - b.Changes}
}

// balanceBytes is what the balancer's messages add to one rank's bytes sent,
// from the model's shape and what it moved (float32): a header and a pace report
// each call; forward, the query rows given (and their positions, document ids)
// and the attention output and lse of the rows taken; backward, the query, output,
// lse and upstream gradient rows given, the key/value gradient sums sent in two
// parts at each later step of a giving call, and dq of the rows taken.
func balanceBytes(c model.Config, seqLen, sp int, st parallel.BalanceStats) int64 {
	qRow := int64(c.Heads*c.HeadDimension()) * 4
	lseRow, ids := int64(c.Heads)*4, int64(2*4)
	dkv := 2 * int64(seqLen/sp) * int64(c.KVHeads*c.HeadDimension()) * 4
	return st.Calls*(4+16) +
		st.FwdGiven*(qRow+ids) + st.FwdTaken*(qRow+lseRow) +
		st.BwdGiven*(3*qRow+lseRow+ids) + st.BwdGivingCalls*int64(sp-1)*dkv + st.BwdTaken*qRow
}

// predictedBytes is what ring attention and the bucketed all-reduce must send
// from one rank per step, from the model's shape alone.
func predictedBytes(c model.Config, seqLen, sp, rank int, keepAttention bool, nParams int) int64 {
	lw := int64(seqLen / sp)
	kv := 2*lw*int64(c.KVHeads*c.HeadDimension())*4 + 2*lw*4 // k, v (float32) and positions, document ids (int32)
	grads := 2 * lw * int64(c.KVHeads*c.HeadDimension()) * 4 // dk, dv
	perLayer := int64(sp-1)*kv +                             // forward
		int64(sp-1)*kv + int64(sp)*grads // backward: the blocks again, with their gradients
	if !keepAttention {
		perLayer += int64(sp-1) * kv // the forward again, recomputed in backward
	}
	total := int64(c.Layers) * perLayer
	// The all-reduce: one bucket per layer, one for the rest plus the loss.
	layerN := nParams - (c.Vocab*c.Dim*2 + c.Dim) // untied: embedding, head, final norm
	perLayerN := layerN / c.Layers
	for range c.Layers {
		total += int64(parallel.SentElems(perLayerN, sp, rank)) * 4
	}
	total += int64(parallel.SentElems(nParams-layerN+1, sp, rank)) * 4
	return total
}

// runPinnedWorkers runs 2 worker-mode stepbench processes, rank r pinned to
// core pin[r], each writing its JSON result to dir/rankR.json; env is added
// to their environment.
func runPinnedWorkers(self string, pin []string, workerProcs int, dir string, args, env []string) error {
	err := launch.RunLocal(context.Background(), launch.LocalConfig{
		Workers: 2,
		Stderr:  os.Stderr,
		Env:     env,
		Command: func(rank int) (string, []string) {
			// One core each (taskset), but two OS threads for Go: GoMLX's assembly
			// kernels cannot be preempted by the Go scheduler, so with GOMAXPROCS=1
			// the goroutines draining gRPC would wait for a whole kernel to end
			// while the peer's sends stall; with two threads the kernel's time
			// slicing lets them in.
			a := append([]string{"-c", pin[rank], "env", "GOMAXPROCS=" + strconv.Itoa(workerProcs), self, "--mode", "worker",
				"--rank", strconv.Itoa(rank), "--result", filepath.Join(dir, fmt.Sprintf("rank%d.json", rank))}, args...)
			return "taskset", a
		},
		StartTimeout: 5 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("2 workers: %w", err)
	}
	return nil
}

// runParallel: the same sequence with 1 worker on both cores, then 2 workers
// pinned to one core each, side by side in one run.
func runParallel(workerProcs int, cores string, single bool, recompute, balance string, seqLen, steps, warmup, blockQ, blockK, layers int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pin := strings.Split(cores, ",")
	if len(pin) != 2 {
		return fmt.Errorf("--cores %q: want two cores, one per rank, like 0,1", cores)
	}
	args := []string{"--recompute", recompute, "--seq-len", strconv.Itoa(seqLen), "--steps", strconv.Itoa(steps),
		"--warmup", strconv.Itoa(warmup), "--block-q", strconv.Itoa(blockQ), "--block-k", strconv.Itoa(blockK),
		"--layers", strconv.Itoa(layers), "--offload", offloadMode, "--memory-limit-mib", strconv.Itoa(memoryLimitMiB),
		"--balance", balance, "--backend", bench.backend, "--preset", bench.preset, "--dtype", bench.dtype,
		"--grad-accum", strconv.Itoa(bench.gradAccum), "--attention", bench.attention(),
		"--device-resident=" + strconv.FormatBool(bench.deviceResident)}
	var one struct {
		Median float64 `json:"step_seconds_median"`
	}
	if single {
		fmt.Fprintf(os.Stderr, "stepbench: 1 worker, 2 cores, seq_len %d\n", seqLen)
		out, err := exec.Command(self, append([]string{"--mode", "step"}, args...)...).Output()
		if err != nil {
			return fmt.Errorf("1 worker: %w", err)
		}
		if err := json.Unmarshal(out, &one); err != nil {
			return fmt.Errorf("1 worker: %w (%s)", err, out)
		}
	}
	dir, err := os.MkdirTemp("", "stepbench-par")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "stepbench: 2 workers, one core each (taskset), seq_len %d\n", seqLen)
	if err := runPinnedWorkers(self, pin, workerProcs, dir, args, nil); err != nil {
		return err
	}
	cfg, cleanup, err := benchConfig(recompute, seqLen, steps, warmup, blockQ, blockK, layers)
	if err != nil {
		return err
	}
	cleanup()
	p, err := model.Init(cfg.Model, cfg.DType, 0.02, 1)
	if err != nil {
		return err
	}
	out := map[string]any{"impl": "torus-parallel", "seq_len": seqLen, "recompute": recompute, "cores": cores, "balance": balance,
		"offload": offloadMode, "memory_limit_mib": memoryLimitMiB, "one_worker_two_cores_s": one.Median}
	var workers []map[string]any
	var slowest, slowestHeld float64
	for r := range 2 {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rank%d.json", r)))
		if err != nil {
			return err
		}
		var w workerResult
		if err := json.Unmarshal(b, &w); err != nil {
			return err
		}
		// With --balance alternate, the balanced steps and the held ones apart.
		steps, waits, heldSteps, heldWaits := w.StepSeconds, w.WaitSeconds, []float64{}, []float64{}
		if balance == "alternate" {
			steps, waits = nil, nil
			for i, h := range w.Held {
				if h {
					heldSteps, heldWaits = append(heldSteps, w.StepSeconds[i]), append(heldWaits, w.WaitSeconds[i])
				} else {
					steps, waits = append(steps, w.StepSeconds[i]), append(waits, w.WaitSeconds[i])
				}
			}
		}
		med := median(steps)
		slowest = max(slowest, med)
		waitShare := median(waits) / med
		// Bytes: every step's against the shape's figure plus what the balancer
		// moved in that step.
		shape := predictedBytes(cfg.Model, seqLen, 2, r, cfg.KeepAttention, p.NumParams())
		agree := true
		var moved int64
		for i, sent := range w.BytesSent {
			moved = 0
			if i < len(w.Balance) {
				moved = balanceBytes(cfg.Model, seqLen, 2, w.Balance[i])
			}
			agree = agree && sent == shape+moved
		}
		kindShare := map[string]float64{} // of the median step (by total wait)
		if i := medianIndex(w.WaitSeconds); i >= 0 {
			for k, v := range w.WaitKinds[i] {
				kindShare[k] = v / w.StepSeconds[i]
			}
		}
		wr := map[string]any{
			"rank": r, "step_seconds_median": med, "wait_share": waitShare, "wait_share_by_kind": kindShare,
			"wait_seconds_all": w.WaitSeconds, "wait_kinds_all": w.WaitKinds, "step_seconds_all": w.StepSeconds,
			"cpu_seconds_all":        w.CPUSeconds,
			"bytes_sent_per_step":    w.BytesSent[len(w.BytesSent)-1],
			"bytes_predicted":        shape + moved,
			"bytes_balancing":        moved, // of the prediction: what the balancer's messages add
			"bytes_agree_every_step": agree,
			"balance_all":            w.Balance,
			"held_all":               w.Held,
			"peak_rss_bytes":         w.PeakRSS,
			"memory":                 w.Memory,
		}
		if len(heldSteps) > 0 {
			hm := median(heldSteps)
			slowestHeld = max(slowestHeld, hm)
			wr["held_step_seconds_median"], wr["held_wait_share"] = hm, median(heldWaits)/hm
		}
		workers = append(workers, wr)
	}
	if slowestHeld > 0 {
		out["held_two_workers_s"] = slowestHeld // the same workers, steps with balancing held
		out["ratio_balanced_over_held"] = slowest / slowestHeld
	}
	out["workers"] = workers
	out["two_workers_one_core_each_s"] = slowest
	if single {
		out["ratio_two_over_one"] = slowest / one.Median
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
