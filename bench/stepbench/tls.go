package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/launch"
	"github.com/torusml/torus/parallel"
)

// The cost of TLS on the ring (--mode tls): 2 workers, one core each, train
// the same sequence with their streams as torus train makes them (mutual TLS
// 1.3 with the CA derived from the run's secret, and the cluster token) and
// as --insecure does (plaintext, no token), side by side in one run. Each
// worker holds both transports, connected at start, and takes one or the
// other for a whole step: the rounds go plaintext, TLS; then TLS, plaintext
// (ABBA), so a drift of the machine's speed over the run weighs on both
// alike. Everything else (the processes, the compiled pieces, the weights'
// trajectory, the data) is shared, so the only difference between the two
// kinds of step is the transport.

// tlsMode is the worker's --tls: off (plaintext), on (TLS), alternate (both,
// by step; see tlsStep).
var tlsMode = "off"

// tlsStep says whether step i (warm-up steps first, then the timed ones)
// runs over TLS under --tls alternate: warm-up steps alternate; timed step j
// is round j/2's first or second, plaintext first in even rounds, TLS first
// in odd ones.
func tlsStep(i, warmup int) bool {
	if i < warmup {
		return i%2 == 1
	}
	j := i - warmup
	return (j%2 == 1) == ((j/2)%2 == 0)
}

// switchTransport is the plaintext and the TLS transport of one worker, the
// one in use chosen between steps. Both ranks switch at the same step, and a
// step's messages all go through the transport of that step, so a message
// sent early for the next step waits in the other transport's mailbox.
type switchTransport struct {
	ts  [2]parallel.Transport // plaintext, TLS
	cur atomic.Int32
}

func (s *switchTransport) use(tls bool) {
	if tls {
		s.cur.Store(1)
	} else {
		s.cur.Store(0)
	}
}

func (s *switchTransport) t() parallel.Transport { return s.ts[s.cur.Load()] }
func (s *switchTransport) Rank() int             { return s.ts[0].Rank() }
func (s *switchTransport) Size() int             { return s.ts[0].Size() }

func (s *switchTransport) Send(ctx context.Context, to int, tag string, ts ...*tensors.Tensor) error {
	return s.t().Send(ctx, to, tag, ts...)
}

func (s *switchTransport) Recv(ctx context.Context, from int, tag string, want ...parallel.Spec) ([]*tensors.Tensor, error) {
	return s.t().Recv(ctx, from, tag, want...)
}

// Stats are both transports' together (one is idle in any step).
func (s *switchTransport) Stats() parallel.Stats {
	a, b := s.ts[0].Stats(), s.ts[1].Stats()
	return parallel.Stats{BytesSent: a.BytesSent + b.BytesSent, BytesRecv: a.BytesRecv + b.BytesRecv,
		RecvWaitSeconds: a.RecvWaitSeconds + b.RecvWaitSeconds}
}

func (s *switchTransport) Close() error { return errors.Join(s.ts[0].Close(), s.ts[1].Close()) }

// workerTransport is a worker's transport under --tls: it listens (twice
// under alternate: the address it prints is "PLAIN,TLS"), learns its peers
// from the launcher (stdin) and connects. TLS is torus train's: the CA derived
// from the run's secret (launch.SecretEnv) and the cluster token of it.
func workerTransport(ctx context.Context, rank int, peersLine []byte, listeners []net.Listener) (parallel.Transport, error) {
	var peers launch.Peers
	if err := json.Unmarshal(peersLine, &peers); err != nil {
		return nil, err
	}
	plainAddrs, tlsAddrs := peers.Addrs, peers.Addrs
	if tlsMode == "alternate" {
		plainAddrs, tlsAddrs = make([]string, len(peers.Addrs)), make([]string, len(peers.Addrs))
		for i, a := range peers.Addrs {
			p, t, ok := strings.Cut(a, ",")
			if !ok {
				return nil, fmt.Errorf("peer %d's address %q: want PLAIN,TLS", i, a)
			}
			plainAddrs[i], tlsAddrs[i] = p, t
		}
	}
	sealed := func(ln net.Listener) (parallel.Transport, error) {
		secret := os.Getenv(launch.SecretEnv)
		if secret == "" {
			ln.Close()
			return nil, fmt.Errorf("--tls %s: no %s in the environment", tlsMode, launch.SecretEnv)
		}
		id, err := parallel.DeriveTLS([]byte(secret))
		if err != nil {
			ln.Close()
			return nil, err
		}
		_, token := launch.ClusterKeys([]byte(secret))
		return parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: rank, Addrs: tlsAddrs, Listener: ln, Token: token, TLS: id})
	}
	switch tlsMode {
	case "off":
		return parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: rank, Addrs: plainAddrs, Listener: listeners[0]})
	case "on":
		return sealed(listeners[0])
	}
	plain, err := parallel.NewGRPC(ctx, parallel.GRPCConfig{Rank: rank, Addrs: plainAddrs, Listener: listeners[0]})
	if err != nil {
		listeners[1].Close()
		return nil, err
	}
	tls, err := sealed(listeners[1])
	if err != nil {
		plain.Close()
		return nil, err
	}
	sw := &switchTransport{ts: [2]parallel.Transport{plain, tls}}
	// Both connections carry a few messages of a ring block's size (8 MiB)
	// each way first, so that neither's first step pays for growing its
	// HTTP/2 windows.
	for i := range 2 {
		sw.use(i == 1)
		if err := warmTransport(ctx, sw); err != nil {
			sw.Close()
			return nil, fmt.Errorf("warming the %s transport: %w", []string{"plaintext", "TLS"}[i], err)
		}
	}
	sw.use(false)
	return sw, nil
}

// warmTransport sends 4 messages of 8 MiB to every peer and takes theirs.
func warmTransport(ctx context.Context, t parallel.Transport) error {
	const n = 2 << 20 // float32s
	for k := range 4 {
		tag := "stepbench-warm/" + strconv.Itoa(k)
		for r := range t.Size() {
			if r != t.Rank() {
				if err := t.Send(ctx, r, tag, tensors.FromFlatDataAndDimensions(make([]float32, n), n)); err != nil {
					return err
				}
			}
		}
		for r := range t.Size() {
			if r != t.Rank() {
				if _, err := t.Recv(ctx, r, tag); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// measureTransfer moves, reps times, bytes (a step's worth) to every peer in
// messages of 8 MiB while taking theirs, over plaintext and TLS in turn
// (ABBA), and times each: the transport's part of a step, without the
// compute around it and with less of the machine's noise.
func measureTransfer(ctx context.Context, sw *switchTransport, bytes int64, reps int) (wall, cpu []float64, tls []bool, err error) {
	const n = 2 << 20 // float32s: 8 MiB
	msgs := int(max(1, (bytes+4*n-1)/(4*n)))
	size := func(i int) int { // the last message the rest
		return int(min(n, max(1, bytes/4-int64(i)*n)))
	}
	for k := range reps {
		sealed := tlsStep(k, 0)
		sw.use(sealed)
		t0, c0 := time.Now(), cpuSeconds()
		sent := make(chan error, 1)
		go func() {
			for i := range msgs {
				for r := range sw.Size() {
					if r != sw.Rank() {
						if err := sw.Send(ctx, r, fmt.Sprintf("stepbench-xfer/%d/%d", k, i), tensors.FromFlatDataAndDimensions(make([]float32, size(i)), size(i))); err != nil {
							sent <- err
							return
						}
					}
				}
			}
			sent <- nil
		}()
		for i := range msgs {
			for r := range sw.Size() {
				if r != sw.Rank() {
					if _, err := sw.Recv(ctx, r, fmt.Sprintf("stepbench-xfer/%d/%d", k, i)); err != nil {
						return nil, nil, nil, err
					}
				}
			}
		}
		if err := <-sent; err != nil {
			return nil, nil, nil, err
		}
		wall, cpu, tls = append(wall, time.Since(t0).Seconds()), append(cpu, cpuSeconds()-c0), append(tls, sealed)
	}
	sw.use(false)
	return wall, cpu, tls, nil
}

// runTLS: 2 workers pinned to one core each, every timed step over
// plaintext or TLS by rounds (tlsStep), and the two kinds of step compared.
func runTLS(workerProcs int, cores, recompute, balance string, seqLen, rounds, warmup, blockQ, blockK, layers int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pin := strings.Split(cores, ",")
	if len(pin) != 2 {
		return fmt.Errorf("--cores %q: want two cores, one per rank, like 0,1", cores)
	}
	if rounds < 1 {
		return fmt.Errorf("--steps %d: want at least one round (a plaintext and a TLS step)", rounds)
	}
	steps := 2 * rounds
	args := []string{"--recompute", recompute, "--seq-len", strconv.Itoa(seqLen), "--steps", strconv.Itoa(steps),
		"--warmup", strconv.Itoa(warmup), "--block-q", strconv.Itoa(blockQ), "--block-k", strconv.Itoa(blockK),
		"--layers", strconv.Itoa(layers), "--offload", offloadMode, "--memory-limit-mib", strconv.Itoa(memoryLimitMiB),
		"--balance", balance, "--backend", bench.backend, "--preset", bench.preset, "--dtype", bench.dtype,
		"--grad-accum", strconv.Itoa(bench.gradAccum), "--attention", bench.attention(),
		"--device-resident=" + strconv.FormatBool(bench.deviceResident), "--tls", "alternate"}
	secret, err := launch.NewSecret()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "stepbench-tls")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	load0 := loadAvg()
	start := time.Now()
	fmt.Fprintf(os.Stderr, "stepbench: 2 workers, one core each, seq_len %d: %d rounds of a plaintext and a TLS step (ABBA)\n", seqLen, rounds)
	if err := runPinnedWorkers(self, pin, workerProcs, dir, args, []string{launch.SecretEnv + "=" + secret}); err != nil { // the secret as torus train's workers get it
		return err
	}
	var ws [2]workerResult
	for r := range ws {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rank%d.json", r)))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &ws[r]); err != nil {
			return err
		}
		if len(ws[r].StepSeconds) != steps || len(ws[r].TLS) != steps {
			return fmt.Errorf("rank %d timed %d steps (%d marked), want %d", r, len(ws[r].StepSeconds), len(ws[r].TLS), steps)
		}
	}
	out := tlsCompare(ws, steps)
	for k, v := range map[string]any{"impl": "torus-tls", "seq_len": seqLen, "workers": 2, "cores": cores, "recompute": recompute,
		"balance": balance, "offload": offloadMode, "rounds": rounds, "order": "ABBA (plaintext, TLS; TLS, plaintext; ...)",
		"tls": "mutual TLS 1.3, CA derived from the run's secret, cluster token (as torus train)", "plaintext": "no TLS, no token (as --insecure)",
		"loadavg_before": load0, "loadavg_after": loadAvg(), "wall_seconds": time.Since(start).Seconds(), "status": "ok"} {
		out[k] = v
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// tlsCompare: a step's time is its slower rank's (the ranks wait for each
// other); the ratio is of the medians of the TLS and the plaintext steps,
// with each round's ratio (its TLS step over its plaintext step) for the
// spread. CPU time (both ranks') and bytes sent are compared the same way.
func tlsCompare(ws [2]workerResult, steps int) map[string]any {
	var plain, sealed, plainCPU, sealedCPU, plainWait, sealedWait, rounds []float64
	var plainSent, sealedSent []int64
	for i := range steps {
		t, cpu, wait := 0.0, 0.0, 0.0
		var sent int64
		for _, w := range ws {
			t, cpu, wait = max(t, w.StepSeconds[i]), cpu+w.CPUSeconds[i], max(wait, w.WaitSeconds[i])
			sent += w.BytesSent[i]
		}
		if ws[0].TLS[i] {
			sealed, sealedCPU, sealedWait, sealedSent = append(sealed, t), append(sealedCPU, cpu), append(sealedWait, wait), append(sealedSent, sent)
		} else {
			plain, plainCPU, plainWait, plainSent = append(plain, t), append(plainCPU, cpu), append(plainWait, wait), append(plainSent, sent)
		}
	}
	for r := range len(plain) {
		rounds = append(rounds, sealed[r]/plain[r])
	}
	mp, ms := median(plain), median(sealed)
	// The transfers alone: a transfer's time is its slower rank's, its CPU
	// time both ranks'.
	var xp, xs, xpCPU, xsCPU []float64
	for k := range ws[0].TransferSeconds {
		t, cpu := max(ws[0].TransferSeconds[k], ws[1].TransferSeconds[k]), ws[0].TransferCPU[k]+ws[1].TransferCPU[k]
		if ws[0].TransferTLS[k] {
			xs, xsCPU = append(xs, t), append(xsCPU, cpu)
		} else {
			xp, xpCPU = append(xp, t), append(xpCPU, cpu)
		}
	}
	transfer := map[string]any{}
	if len(xp) > 0 && len(xs) > 0 {
		transfer = map[string]any{
			"transfer_bytes_per_rank":        ws[0].BytesSent[len(ws[0].BytesSent)-1],
			"transfer_plaintext_seconds":     xp,
			"transfer_tls_seconds":           xs,
			"transfer_plaintext_cpu":         xpCPU,
			"transfer_tls_cpu":               xsCPU,
			"transfer_added_seconds":         median(xs) - median(xp),
			"transfer_added_share_of_step":   (median(xs) - median(xp)) / mp, // what TLS adds to moving a step's bytes, over the plaintext step
			"transfer_added_cpu_of_step_cpu": (median(xsCPU) - median(xpCPU)) / median(plainCPU),
		}
	}
	out := map[string]any{
		"plaintext_step_seconds_all":    plain,
		"tls_step_seconds_all":          sealed,
		"plaintext_step_seconds_median": mp,
		"tls_step_seconds_median":       ms,
		"ratio_tls_over_plaintext":      ms / mp,
		"ratio_tls_over_plaintext_min":  slices.Min(sealed) / slices.Min(plain), // the fastest of each: what is left with the least interference
		"round_ratios":                  rounds,                                 // each round's TLS step over its plaintext step
		"round_ratio_min":               slices.Min(rounds),
		"round_ratio_max":               slices.Max(rounds),
		"plaintext_spread":              (slices.Max(plain) - slices.Min(plain)) / mp, // (max-min)/median
		"tls_spread":                    (slices.Max(sealed) - slices.Min(sealed)) / ms,
		"plaintext_cpu_seconds_all":     plainCPU, // both ranks' CPU time, per step
		"tls_cpu_seconds_all":           sealedCPU,
		"cpu_ratio_tls_over_plaintext":  median(sealedCPU) / median(plainCPU),
		"plaintext_wait_seconds_all":    plainWait, // the longer-blocked rank's, per step
		"tls_wait_seconds_all":          sealedWait,
		"plaintext_bytes_sent_per_step": plainSent[len(plainSent)-1], // both ranks' payload
		"tls_bytes_sent_per_step":       sealedSent[len(sealedSent)-1],
		"rank_step_seconds_all":         [][]float64{ws[0].StepSeconds, ws[1].StepSeconds},
		"tls_steps":                     ws[0].TLS,
		"peak_rss_bytes":                max(ws[0].PeakRSS, ws[1].PeakRSS),
	}
	maps.Copy(out, transfer)
	return out
}

// loadAvg is /proc/loadavg's three load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
