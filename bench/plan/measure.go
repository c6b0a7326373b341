package main

// Running torus as a user does and reading what it leaves: one recipe trained
// in a process of its own (its peak RSS and step times from metrics.jsonl),
// the plan's prediction of the same recipe, and the machine's matmul rate.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/torusml/torus/plan"
)

func measure(torus, dir, data string, r run, gflops float64) (row, error) {
	out := row{Run: r.name, Role: r.role, Recipe: r.describe()}
	rdir := filepath.Join(dir, r.name)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return out, err
	}
	recipePath := r.recipe
	if recipePath == "" {
		recipePath = filepath.Join(rdir, "recipe.yaml")
		if err := os.WriteFile(recipePath, []byte(r.yaml(data)), 0o644); err != nil {
			return out, err
		}
	}
	var sets []string
	for _, s := range append(r.sets, "checkpoint.every_steps=0", "log.progress=none") {
		sets = append(sets, "--set", s)
	}
	p, err := predict(torus, recipePath, sets, gflops)
	if err != nil {
		return out, err
	}
	out.PredictedPeak, out.PredictedHigh, out.Transient, out.PredictedStep = p.Total, p.TotalHigh, p.TransientPiece, p.StepSeconds
	out.PredictedLive = p.Weights + p.Grads + p.Optimizer + p.Stored + p.Config.DataBytes + p.Transient
	out.PredictedTran = p.Transient
	out.Config = p.Config
	workers := p.Config.SP * p.Config.DP

	runDir := filepath.Join(rdir, "run")
	cmd := exec.Command(torus, append([]string{"train", recipePath, "--out", runDir}, sets...)...)
	cmd.Env = append(os.Environ(), "GOGC=100")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return out, err
	}
	w := watch(cmd.Process.Pid, runDir)
	err = cmd.Wait()
	peaks, spilled := w()
	if err != nil {
		return out, fmt.Errorf("torus train: %w\n%s", err, log.String())
	}
	steps, err := readMetrics(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		return out, err
	}
	// Rank 0's peak is in the metrics (after each step, before the final
	// export); the other workers' peaks come from watching their processes.
	for _, s := range steps {
		out.MeasuredStep = s.StepSeconds
		peaks[0] = s.PeakRSSBytes
		out.MeasuredMemory = s.Memory
	}
	if len(steps) > 1 {
		out.MeasuredStep = math.Inf(1)
		for _, s := range steps[1:] {
			out.MeasuredStep = min(out.MeasuredStep, s.StepSeconds)
		}
	}
	for rank := range workers {
		out.PerWorker = append(out.PerWorker, peaks[rank])
		out.MeasuredPeak = max(out.MeasuredPeak, peaks[rank])
	}
	out.ErrorPct = 100 * float64(out.PredictedPeak-out.MeasuredPeak) / float64(out.MeasuredPeak)
	if r.offload == "disk" && !spilled {
		out.Note = "no spill file seen: this torus build does not offload to disk yet"
	}
	return out, nil
}

type stepLine struct {
	Step         int     `json:"step"`
	StepSeconds  float64 `json:"step_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	Memory       any     `json:"memory"`
}

func readMetrics(path string) ([]stepLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []stepLine
	s := bufio.NewScanner(f)
	for s.Scan() {
		var l stepLine
		if err := json.Unmarshal(s.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no steps", path)
	}
	return out, s.Err()
}

// predict runs `torus plan --json` on the recipe, as a user would, and
// returns its plan (the cpu device has one).
func predict(torus, recipePath string, sets []string, gflops float64) (plan.Report, error) {
	args := append([]string{"plan", recipePath, "--json", "--matmul-gflops", strconv.FormatFloat(gflops, 'f', -1, 64)}, sets...)
	cmd := exec.Command(torus, args...)
	cmd.Env = append(os.Environ(), "GOGC=100")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return plan.Report{}, fmt.Errorf("torus %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var res struct {
		Plans []struct {
			Report plan.Report `json:"report"`
		} `json:"plans"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Plans) != 1 {
		return plan.Report{}, fmt.Errorf("torus plan --json: %v (%d plans)\n%s", err, len(res.Plans), out)
	}
	return res.Plans[0].Report, nil
}

// calibrate asks `torus plan` for the matmul rate it calibrates (~1 s).
func calibrate(torus string) (float64, error) {
	dir, err := os.MkdirTemp("", "torus-planbench-cal")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(p, []byte("data: {sources: [{type: text_file, path: x}]}\n"), 0o644); err != nil {
		return 0, err
	}
	out, err := exec.Command(torus, "plan", p, "--json").Output()
	if err != nil {
		return 0, fmt.Errorf("torus plan: %w", err)
	}
	var res struct {
		Plans []struct {
			Report plan.Report `json:"report"`
		} `json:"plans"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Plans) != 1 {
		return 0, fmt.Errorf("torus plan --json: %v\n%s", err, out)
	}
	return res.Plans[0].Report.Config.MatmulGFLOPS, nil
}

func writeRandomText(path string, n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return os.WriteFile(path, b, 0o644)
}
