// Command benchreport turns the JSON lines of bench/run.sh into the table of
// torus against PyTorch: step seconds, tokens/s, peak RSS and their ratios, and
// torus's achieved GFLOP/s against the measured matmul peak.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type row struct {
	Impl      string    `json:"impl"`
	SeqLen    int       `json:"seq_len"`
	Status    string    `json:"status"`
	Message   string    `json:"message"`
	Median    float64   `json:"step_seconds_median"`
	All       []float64 `json:"step_seconds_all"`
	TokPerS   float64   `json:"tokens_per_s"`
	PeakRSS   int64     `json:"peak_rss_bytes"`
	FLOPs     float64   `json:"flops_per_step"`
	MatmulGF  float64   `json:"matmul_gflops"`
	Attention string    `json:"attention"`
	Recompute string    `json:"recompute"`
	Version   string    `json:"torch_version"`
	Phase     string    `json:"phase"`
	LoadAvg   string    `json:"loadavg"`
	CPU       string    `json:"cpu"`
	NProc     int       `json:"nproc"`
	MemKiB    int64     `json:"mem_available_kib"`
}

func main() {
	torus, torch := map[int]row{}, map[int]row{}
	var par []parRow
	var ckpts []ckptRow
	var offloads []offloadRow
	var toks []tokRow
	var tlsRows []tlsRow
	var memlen []offloadRow
	var peakTorus, peakTorch float64
	var machine []row
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if strings.Contains(line, `"impl":"torus-memlen"`) {
			var o offloadRow
			if err := json.Unmarshal([]byte(line), &o); err == nil {
				memlen = append(memlen, o)
			}
			continue
		}
		if strings.Contains(line, `"impl":"torus-offload"`) {
			var o offloadRow
			if err := json.Unmarshal([]byte(line), &o); err == nil {
				offloads = append(offloads, o)
			}
			continue
		}
		if strings.Contains(line, `"impl":"torus-tokenizer"`) || strings.Contains(line, `"impl":"torus-tokenized"`) {
			var r tokRow
			if err := json.Unmarshal([]byte(line), &r); err == nil {
				toks = append(toks, r)
			}
			continue
		}
		if strings.Contains(line, `"impl":"torus-ckpt"`) {
			var c ckptRow
			if err := json.Unmarshal([]byte(line), &c); err == nil {
				ckpts = append(ckpts, c)
			}
			continue
		}
		if strings.Contains(line, `"impl":"torus-tls"`) {
			var r tlsRow
			if err := json.Unmarshal([]byte(line), &r); err == nil {
				tlsRows = append(tlsRows, r)
			}
			continue
		}
		if strings.Contains(line, `"impl":"torus-parallel"`) {
			var p parRow
			if err := json.Unmarshal([]byte(line), &p); err == nil {
				par = append(par, p)
			}
			continue
		}
		var r row
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: skipping %q: %v\n", line, err)
			continue
		}
		switch {
		case r.Impl == "machine":
			machine = append(machine, r)
		case r.MatmulGF > 0 && r.Impl == "torus":
			peakTorus = r.MatmulGF
		case r.MatmulGF > 0:
			peakTorch = r.MatmulGF
		case r.Impl == "torus":
			torus[r.SeqLen] = r
		case r.Impl == "pytorch":
			torch[r.SeqLen] = r
		}
	}
	var lens []int
	for l := range torus {
		lens = append(lens, l)
	}
	for l := range torch {
		if _, ok := torus[l]; !ok {
			lens = append(lens, l)
		}
	}
	sort.Ints(lens)

	fmt.Println("Reference model: vocab 256, dim 256, 4 layers, 8 heads (4 kv), MLP 688, fp32, AdamW, batch 1; median of timed steps after warm-up.")
	fmt.Printf("Float32 matmul peak (2048^3): torus/GoMLX %.0f GFLOP/s, PyTorch %.0f GFLOP/s\n\n", peakTorus, peakTorch)
	fmt.Println("| seq_len | torus s/step | PyTorch s/step | torus tok/s | PyTorch tok/s | tok/s torus/PyTorch | torus peak RSS | PyTorch peak RSS | RSS torus/PyTorch | torus GFLOP/s (% of peak) |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, l := range lens {
		a, b := torus[l], torch[l]
		okA, okB := a.Status == "ok", b.Status == "ok"
		cell := func(ok bool, r row, f string, v float64) string {
			if !ok {
				if r.Status == "" {
					return "not run"
				}
				return r.Status
			}
			return fmt.Sprintf(f, v)
		}
		ratio := func(x, y float64) string {
			if !okA || !okB || y == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2fx", x/y)
		}
		gf := "n/a"
		if okA && a.Median > 0 && a.FLOPs > 0 {
			g := a.FLOPs / a.Median / 1e9
			gf = fmt.Sprintf("%.1f", g)
			if peakTorus > 0 {
				gf += fmt.Sprintf(" (%.0f%%)", 100*g/peakTorus)
			}
		}
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l,
			cell(okA, a, "%.3f", a.Median), cell(okB, b, "%.3f", b.Median),
			cell(okA, a, "%.0f", a.TokPerS), cell(okB, b, "%.0f", b.TokPerS), ratio(a.TokPerS, b.TokPerS),
			cell(okA, a, "%.0f MiB", mib(a.PeakRSS)), cell(okB, b, "%.0f MiB", mib(b.PeakRSS)), ratio(float64(a.PeakRSS), float64(b.PeakRSS)), gf)
	}
	for _, l := range lens {
		if b := torch[l]; b.Status != "" && b.Status != "ok" {
			fmt.Printf("\nPyTorch at %d: %s (%s): torus's figure stands alone.", l, b.Status, b.Message)
		}
	}
	for _, l := range lens {
		if b := torch[l]; b.Status == "ok" && b.Attention != "" {
			fmt.Printf("\nPyTorch %s, attention path: %s.", b.Version, b.Attention)
			break
		}
	}
	for _, l := range lens {
		if a := torus[l]; a.Recompute != "" {
			fmt.Printf("\ntorus memory.recompute: %s.", a.Recompute)
			break
		}
	}
	for _, p := range par {
		if p.One > 0 {
			fmt.Printf("\n\nSequence parallelism, seq_len %d (ring, recompute %s, offload %s): 1 worker on 2 cores %.2f s/step; 2 workers on one core each %.2f s/step; ratio %.2fx\n",
				p.SeqLen, p.Recompute, p.Offload, p.One, p.Two, p.Ratio)
		} else {
			fmt.Printf("\n\nSequence parallelism, seq_len %d (ring, recompute %s, offload %s): 2 workers on one core each %.2f s/step\n",
				p.SeqLen, p.Recompute, p.Offload, p.Two)
		}
		if p.Held > 0 {
			fmt.Printf("Balancing (parallel.balance: adaptive) on every other step, held on the others, in the same run: held %.2f s/step; balanced / held %.3fx\n", p.Held, p.BalancedOverHeld)
		}
		fmt.Println("| rank | s/step | blocked on communication (target < 10%) | blocked, balancing held | bytes sent/step | predicted from the model's shape (+ what balancing moved) | every step agrees | peak RSS |")
		fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
		for _, w := range p.Workers {
			held := "n/a"
			if p.Held > 0 {
				held = fmt.Sprintf("%.1f%%", 100*w.HeldWaitShare)
			}
			fmt.Printf("| %d | %.3f | %.1f%% | %s | %d | %d (+%d) | %v | %.0f MiB |\n", w.Rank, w.Median, 100*w.WaitShare, held, w.Sent,
				w.Predicted, w.Balancing, w.Agree, mib(w.PeakRSS))
		}
	}
	printTLS(tlsRows)
	var none *offloadRow
	for i, o := range offloads {
		if o.Offload == "none" && o.Status == "ok" {
			none = &offloads[i]
		}
	}
	if len(offloads) > 0 {
		fmt.Printf("\n\nActivation offload, 16 layers, seq_len %d, one worker (targets for disk: peak RSS below none's by >= 80%% of the stored bytes; step <= 1.10x none's)\n", offloads[0].SeqLen)
		fmt.Println("| offload | stored-activation bytes resident (most at once) | peak RSS | RSS below none / none's stored bytes | s/step | step vs none |")
		fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, o := range offloads {
			if o.Status != "ok" {
				fmt.Printf("| %s | %s | | | | |\n", o.Offload, o.Status)
				continue
			}
			saving, ratio := "n/a", "n/a"
			if none != nil && none.Memory.Activations > 0 {
				saving = fmt.Sprintf("%.0f%%", 100*float64(none.PeakRSS-o.PeakRSS)/float64(none.Memory.Activations))
				ratio = fmt.Sprintf("%.3fx", o.Median/none.Median)
			}
			fmt.Printf("| %s | %.0f MiB | %.0f MiB | %s | %.2f | %s |\n", o.Offload, mib(o.Memory.Activations), mib(o.PeakRSS), saving, o.Median, ratio)
		}
	}
	printMemLen(memlen)
	for _, c := range ckpts {
		fmt.Printf("\n\nCheckpoints, seq_len %d: blocks of %d steps alternating, with a checkpoint every step (%.1f MiB each, written in the background) vs none\n",
			c.SeqLen, c.Block, mib(c.Bytes))
		fmt.Println("| s/block without | s/block with | step-time ratio (target <= 1.05) | checkpoint.Save MB/s | plain write+fsync MB/s | throughput ratio (target >= 0.8) |")
		fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: |")
		fmt.Printf("| %v | %v | %.3f | %.0f | %.0f | %.2f |\n", c.Without, c.With, c.StepRatio, c.SaveBps/1e6, c.PlainBps/1e6, c.TputRatio)
	}
	printTokenizers(toks)
	fmt.Println("\n\nMachine state:")
	for _, m := range machine {
		fmt.Printf("  %-12s %s  load %s  %d cores  %.1f GiB available\n", m.Phase, m.CPU, m.LoadAvg, m.NProc, float64(m.MemKiB)/(1<<20))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

type parRow struct {
	SeqLen    int     `json:"seq_len"`
	Offload   string  `json:"offload"`
	Recompute string  `json:"recompute"`
	One       float64 `json:"one_worker_two_cores_s"`
	Two       float64 `json:"two_workers_one_core_each_s"`
	Ratio     float64 `json:"ratio_two_over_one"`
	// Held and BalancedOverHeld: with --balance alternate, the steps with
	// balancing held, and the step-time ratio.
	Held             float64 `json:"held_two_workers_s"`
	BalancedOverHeld float64 `json:"ratio_balanced_over_held"`
	Workers          []struct {
		Rank          int     `json:"rank"`
		Median        float64 `json:"step_seconds_median"`
		WaitShare     float64 `json:"wait_share"`
		HeldWaitShare float64 `json:"held_wait_share"`
		Sent          int64   `json:"bytes_sent_per_step"`
		Predicted     int64   `json:"bytes_predicted"`
		Balancing     int64   `json:"bytes_balancing"`
		Agree         bool    `json:"bytes_agree_every_step"`
		PeakRSS       int64   `json:"peak_rss_bytes"`
	} `json:"workers"`
}

type ckptRow struct {
	SeqLen    int       `json:"seq_len"`
	Block     int       `json:"block_steps"`
	Without   []float64 `json:"block_seconds_without"`
	With      []float64 `json:"block_seconds_with"`
	StepRatio float64   `json:"step_ratio_ckpt_every_step"`
	Bytes     int64     `json:"checkpoint_bytes"`
	SaveBps   float64   `json:"save_bytes_per_s"`
	PlainBps  float64   `json:"plain_write_bytes_per_s"`
	TputRatio float64   `json:"throughput_ratio"`
}

type offloadRow struct {
	SeqLen  int     `json:"seq_len"`
	Offload string  `json:"offload"`
	Status  string  `json:"status"`
	Median  float64 `json:"step_seconds_median"`
	PeakRSS int64   `json:"peak_rss_bytes"`
	Memory  struct {
		Activations int64 `json:"activations_peak"`
	} `json:"memory"`
}

type tokRow struct {
	Impl      string  `json:"impl"`
	Tokenizer string  `json:"tokenizer"`
	Status    string  `json:"status"`
	MBps      float64 `json:"mb_per_s"`
	PerByte   float64 `json:"tokens_per_byte"`
	Bytes     int64   `json:"bytes"`
	SeqLen    int     `json:"seq_len"`
	Step      float64 `json:"step_seconds_median"`
	DataWait  float64 `json:"data_wait_seconds_median"`
	WaitShare float64 `json:"data_wait_fraction"`
}

// printTokenizers: each tokenizer's throughput on Go source (one core, beside
// the byte tokenizer's, measured in the same run), and the training step that
// tokenizes as it goes, with the share of it spent waiting for data.
func printTokenizers(rows []tokRow) {
	if len(rows) == 0 {
		return
	}
	var byteRate float64
	for _, r := range rows {
		if r.Impl == "torus-tokenizer" && r.Tokenizer == "byte" {
			byteRate = r.MBps
		}
	}
	fmt.Println("\n\nTokenizers on Go source ($GOROOT/src), one core:")
	fmt.Println("| tokenizer | MB/s | tokens per byte | MB/s over the byte tokenizer's |")
	fmt.Println("| --- | ---: | ---: | ---: |")
	for _, r := range rows {
		if r.Impl != "torus-tokenizer" || r.Status != "ok" {
			continue
		}
		ratio := "n/a"
		if byteRate > 0 {
			ratio = fmt.Sprintf("%.2fx", r.MBps/byteRate)
		}
		fmt.Printf("| %s | %.1f | %.3f | %s |\n", tokName(r.Tokenizer), r.MBps, r.PerByte, ratio)
	}
	for _, r := range rows {
		if r.Impl == "torus-tokenized" && r.Status == "ok" {
			fmt.Printf("\nA training step tokenizing Go source with %s as it runs (seq_len %d): %.3f s/step, waiting for data %.4f s (%.3f%% of the step; target < 1%%)\n",
				tokName(r.Tokenizer), r.SeqLen, r.Step, r.DataWait, 100*r.WaitShare)
		}
	}
}

// tokName is a tokenizer path as a reader knows it: the folder the files are
// in, not "models" or "tokenizer.json".
func tokName(path string) string {
	for base := filepath.Base(path); base == "models" || base == "tokenizer.json"; base = filepath.Base(path) {
		path = filepath.Dir(path)
	}
	return filepath.Base(path)
}

type tlsRow struct {
	Status      string    `json:"status"`
	SeqLen      int       `json:"seq_len"`
	Workers     int       `json:"workers"`
	Rounds      int       `json:"rounds"`
	Recompute   string    `json:"recompute"`
	Balance     string    `json:"balance"`
	Plain       []float64 `json:"plaintext_step_seconds_all"`
	Sealed      []float64 `json:"tls_step_seconds_all"`
	PlainMedian float64   `json:"plaintext_step_seconds_median"`
	TLSMedian   float64   `json:"tls_step_seconds_median"`
	Ratio       float64   `json:"ratio_tls_over_plaintext"`
	MinRatio    float64   `json:"ratio_tls_over_plaintext_min"`
	RoundMin    float64   `json:"round_ratio_min"`
	RoundMax    float64   `json:"round_ratio_max"`
	CPURatio    float64   `json:"cpu_ratio_tls_over_plaintext"`
	PlainBytes  int64     `json:"plaintext_bytes_sent_per_step"`
	TLSBytes    int64     `json:"tls_bytes_sent_per_step"`
	XferBytes   int64     `json:"transfer_bytes_per_rank"`
	XferPlain   []float64 `json:"transfer_plaintext_seconds"`
	XferTLS     []float64 `json:"transfer_tls_seconds"`
	XferShare   float64   `json:"transfer_added_share_of_step"`
	Load0       string    `json:"loadavg_before"`
	Load1       string    `json:"loadavg_after"`
}

// printTLS: the ring's step with its streams over TLS (as torus train makes
// them) against plaintext (--insecure), interleaved in one run.
func printTLS(rows []tlsRow) {
	for _, r := range rows {
		if r.Status != "ok" {
			fmt.Printf("\n\nStep time with TLS against plaintext: %s\n", r.Status)
			continue
		}
		fmt.Printf("\n\nStep time with TLS against plaintext at %d tokens on %d workers (target under 1.03x): %.3fx (ratio of medians)\n",
			r.SeqLen, r.Workers, r.Ratio)
		fmt.Printf("One core each, ring, recompute %s, balance %s; %d rounds alternating plaintext and TLS steps (ABBA) in the same processes; "+
			"a step is its slower rank's. Load average %s before, %s after.\n", r.Recompute, r.Balance, r.Rounds, r.Load0, r.Load1)
		fmt.Println("| streams | s/step median | min | max | (max-min)/median | payload bytes/step (both ranks) |")
		fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, c := range []struct {
			name  string
			all   []float64
			med   float64
			bytes int64
		}{{"plaintext (--insecure)", r.Plain, r.PlainMedian, r.PlainBytes}, {"mutual TLS 1.3 (torus train)", r.Sealed, r.TLSMedian, r.TLSBytes}} {
			if len(c.all) == 0 {
				continue
			}
			lo, hi := minMax(c.all)
			fmt.Printf("| %s | %.3f | %.3f | %.3f | %.1f%% | %d |\n", c.name, c.med, lo, hi, 100*(hi-lo)/c.med, c.bytes)
		}
		fmt.Printf("Each round's TLS step over its plaintext step: %.3fx to %.3fx; fastest TLS step over fastest plaintext step: %.3fx; "+
			"CPU time per step (both ranks, medians), TLS over plaintext: %.3fx\n", r.RoundMin, r.RoundMax, r.MinRatio, r.CPURatio)
		if len(r.XferPlain) > 0 && len(r.XferTLS) > 0 {
			fmt.Printf("A step's bytes alone (%.0f MiB each way, the same workers after the steps, ABBA): plaintext %.3f s, TLS %.3f s (medians): "+
				"TLS adds %.2f%% of the plaintext step\n", mib(r.XferBytes), median(r.XferPlain), median(r.XferTLS), 100*r.XferShare)
		}
	}
}

func minMax(x []float64) (lo, hi float64) {
	lo, hi = x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printMemLen is the memory-at-length table: one step at each length on one
// worker, its peak RSS, and the growth against the shortest length's (issue 18:
// linear in the length, so RSS ratio / length ratio near 1 or below).
func printMemLen(rows []offloadRow) {
	if len(rows) == 0 {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].SeqLen < rows[j].SeqLen })
	var first *offloadRow
	fmt.Println("\n\nMemory at length: one step on one worker, the reference model (target: RSS grows at most in proportion to the length)")
	fmt.Println("| seq_len | peak RSS | KiB per token | RSS ratio to the shortest | length ratio | RSS ratio / length ratio | s/step |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, r := range rows {
		if r.Status != "ok" {
			fmt.Printf("| %d | %s | | | | | |\n", r.SeqLen, r.Status)
			continue
		}
		if first == nil {
			first = &rows[i]
		}
		rss, length := float64(r.PeakRSS)/float64(first.PeakRSS), float64(r.SeqLen)/float64(first.SeqLen)
		fmt.Printf("| %d | %.0f MiB | %.1f | %.2fx | %.0fx | %.2f | %.1f |\n", r.SeqLen, mib(r.PeakRSS), float64(r.PeakRSS)/1024/float64(r.SeqLen), rss, length, rss/length, r.Median)
	}
}
