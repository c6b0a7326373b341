package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/plan"
	"github.com/torusml/torus/recipe"
)

// planFlags are torus plan's flags, as typed.
type planFlags struct {
	sets         []string
	memory       string
	matmulGFLOPS float64
	device       string
	gpus         int
	deviceMemory string
	// deviceMemorySet: --device-memory was given; otherwise GPU 0's free
	// memory, where NVML sees a GPU, replaces the flag's default.
	deviceMemorySet bool
	json            bool
	assume          []string
}

func newPlanCmd() *cobra.Command {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "plan RECIPE.yaml",
		Short: "Predict a recipe's peak memory and step time per worker, before running it",
		Long: `Predicts, for the recipe as given, each worker's peak memory by component and
the time of one step, and whether it fits this machine (--device cpu: its
MemAvailable, or --memory) or the GPUs named (--device gpu --gpus N
--device-memory 80GiB). Where it does not fit, prints the smallest change
that does. The step time comes from a ~1 s float32 matmul timing on this
machine unless --matmul-gflops gives the rate. docs/plan.md has the formulas.
Exits 0 whether or not the recipe fits: the plan is advice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := loadRecipe(args[0], f.sets, "")
			if err != nil {
				return err
			}
			f.deviceMemorySet = cmd.Flags().Changed("device-memory")
			return runPlan(cmd.OutOrStdout(), args[0], r, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.sets, "set", nil, "override a recipe key: --set data.seq_len=16384 (repeatable)")
	fl.StringVar(&f.memory, "memory", "auto", "cpu: memory of this machine for the job, e.g. 16GiB, or auto (MemAvailable)")
	fl.Float64Var(&f.matmulGFLOPS, "matmul-gflops", 0, "matmul rate in GFLOP/s (cpu: the machine's; gpu: one device's bf16 rate); 0 = cpu: calibrate (~1 s), gpu: 989000 (H100 bf16 dense)")
	fl.StringVar(&f.device, "device", "cpu", "cpu (this machine, torus's Go backend) or gpu (a plan: torus has no GPU backend yet)")
	fl.IntVar(&f.gpus, "gpus", 0, "gpu: number of GPUs, one worker each (default: the recipe's parallel.workers)")
	fl.StringVar(&f.deviceMemory, "device-memory", "80GiB", "gpu: memory of one GPU, e.g. 80GiB or 80GB (default: GPU 0's free memory where NVML sees a GPU, else 80GiB)")
	fl.BoolVar(&f.json, "json", false, "print the plans as JSON instead of tables")
	fl.StringSliceVar(&f.assume, "assume", nil, "gpu: also plan with techniques torus does not have: tile=TOKENS (the MLP in sequence tiles), optimizer-host (comma-separated)")
	return cmd
}

// gpuBF16GFLOPS is the default GPU rate: an H100 SXM's dense bf16 peak.
const gpuBF16GFLOPS = 989_000

func runPlan(w io.Writer, path string, r recipe.Recipe, f planFlags) error {
	c, err := planConfig(r)
	if err != nil {
		return err
	}
	switch f.device {
	case "cpu":
		return planCPU(w, path, r, c, f)
	case "gpu":
		return planGPU(w, path, c, f)
	}
	return fmt.Errorf("plan: --device %q: want cpu or gpu", f.device)
}

// planConfig maps a validated recipe to the plan's Config (for the CPU; the
// device fields are set by the caller).
func planConfig(r recipe.Recipe) (plan.Config, error) {
	m := r.Model
	mc := model.Config{
		Vocab: m.Vocab, Dim: m.Dim, Layers: m.Layers, Heads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.HeadDim,
		MLPDim: m.MLPDim, RopeTheta: m.RopeTheta, NormEps: m.NormEps, TieEmbeddings: m.TieEmbeddings,
	}
	if m.From != "" {
		var err error
		if mc, err = model.ReadHFConfig(filepath.Join(m.From, "config.json")); err != nil {
			return plan.Config{}, fmt.Errorf("plan: model.from: %w", err)
		}
	}
	prec := plan.FP32
	if m.DType == "float64" {
		prec = plan.FP64
	}
	p := r.Parallel
	mesh, err := r.Topology().Mesh()
	if err != nil {
		return plan.Config{}, fmt.Errorf("plan: %w", err)
	}
	return plan.Config{
		Model: mc, Precision: prec,
		SeqLen: r.Data.SeqLen, SP: mesh.SP, DP: mesh.DP, Strategy: p.Strategy, GradAccum: r.Schedule.GradAccum,
		Recompute: r.Memory.Recompute, Offload: r.Memory.Offload,
		AttnBlockQ: r.Memory.AttnBlockQ, AttnBlockK: r.Memory.AttnBlockK, LossChunk: r.Memory.LossChunk,
		MemoryLimit: int64(r.Memory.LimitMiB) << 20,
	}, nil
}

// planned is one plan of a recipe, as printed: a scenario, its report, the
// verdict against the memory at hand, and the change that makes it fit.
type planned struct {
	Scenario   string      `json:"scenario"`
	Memory     int64       `json:"memory_bytes"` // per machine (cpu) or per GPU
	MemoryFrom string      `json:"memory_from"`
	Fits       bool        `json:"fits"`
	Report     plan.Report `json:"report"`
	Suggestion *suggestion `json:"suggestion,omitempty"`
	RateFrom   string      `json:"matmul_rate_from"`
	ModelFLOPs float64     `json:"model_flops"`
	config     plan.Config
}

type suggestion struct {
	Changes []string `json:"changes"`
	Need    int64    `json:"need_bytes"`
	Fits    bool     `json:"fits"`
	InTorus bool     `json:"in_torus"`
}

func newPlanned(scenario string, c plan.Config, mem int64, memFrom, rateFrom string) planned {
	r := plan.Plan(c)
	p := planned{Scenario: scenario, Memory: mem, MemoryFrom: memFrom, Fits: r.Fits(mem), Report: r,
		RateFrom: rateFrom, ModelFLOPs: plan.ModelFLOPs(c), config: c}
	if !p.Fits {
		s, ok := plan.Suggest(c, mem)
		p.Suggestion = &suggestion{Changes: s.Changes, Need: s.Report.Need(), Fits: ok, InTorus: s.InTorus}
	}
	return p
}

func planCPU(w io.Writer, path string, r recipe.Recipe, c plan.Config, f planFlags) error {
	if f.gpus != 0 {
		return fmt.Errorf("plan: --gpus needs --device gpu")
	}
	mem, memFrom, err := machineMemory(f.memory)
	if err != nil {
		return err
	}
	c.Device, c.Concurrency, c.WorkersPerMachine = plan.CPU, runtime.GOMAXPROCS(0), c.Workers() // BlockAttention runs GOMAXPROCS query blocks at once
	c.DataBytes = loaderBytes(r)
	if c.GCFactor, err = gcFactor(os.Getenv("GOGC")); err != nil {
		return err
	}
	if c.MemoryLimit == 0 { // memory.limit_mib, when set, replaces GOMEMLIMIT (trainer.New)
		if c.MemoryLimit, err = goMemLimit(os.Getenv("GOMEMLIMIT")); err != nil {
			return err
		}
	}
	rateFrom := "given"
	if c.MatmulGFLOPS = f.matmulGFLOPS; c.MatmulGFLOPS == 0 {
		if c.MatmulGFLOPS, err = calibrateMatmul(time.Second); err != nil {
			return fmt.Errorf("plan: calibrate the matmul rate (or give --matmul-gflops): %w", err)
		}
		rateFrom = "calibrated just now"
	}
	if err := c.Validate(); err != nil {
		return err
	}
	p := newPlanned("torus", c, mem, memFrom, rateFrom)
	if f.json {
		return printJSON(w, path, "cpu", []planned{p})
	}
	fmt.Fprintf(w, "torus plan: %s on this machine (cpu: %s, %d cores)\n", path, workers(c.Workers()), runtime.NumCPU())
	printSetup(w, c)
	printReport(w, "per worker, at its peak (RSS)", p.Report)
	fmt.Fprintf(w, "  %-20s %11s   when the Go collector's timing is unlucky (seen up to %.1fx what is live)\n", "or up to", plan.Bytes(p.Report.TotalHigh), plan.Measured.HighReach*c.GCFactor)
	verdict(w, p)
	rep := p.Report
	fmt.Fprintf(w, "step time: %.3g GFLOP per worker / (%.0f GFLOP/s matmul, %s, / %s x %.2f efficiency) = %s\n",
		rep.FLOPs/1e9, c.MatmulGFLOPS, rateFrom, workers(c.WorkersPerMachine), rep.Efficiency, seconds(rep.StepSeconds))
	tokens := float64(c.SeqLen * c.GradAccum * c.DP)
	fmt.Fprintf(w, "           %.0f tokens per step: %.0f tokens/s\n", tokens, tokens/rep.StepSeconds)
	if rep.SpillBytes > 0 {
		fmt.Fprintf(w, "offload disk: %s written and read back per step per worker\n", plan.Bytes(rep.SpillBytes))
	}
	return nil
}

func planGPU(w io.Writer, path string, c plan.Config, f planFlags) error {
	if f.memory != "auto" {
		return fmt.Errorf("plan: --memory is for --device cpu; use --device-memory for a GPU")
	}
	mem, err := parseBytes(f.deviceMemory)
	if err != nil {
		return fmt.Errorf("plan: --device-memory: %w", err)
	}
	if f.gpus < 0 {
		return fmt.Errorf("plan: --gpus must be >= 1, got %d", f.gpus)
	}
	if f.gpus > 0 && f.gpus != c.Workers() { // the recipe's layout over --gpus workers, sp from them
		layout := c.Topology()
		layout.Workers, layout.SP = f.gpus, 0
		m, err := layout.Mesh()
		if err != nil {
			return fmt.Errorf("plan: --gpus %d: %w", f.gpus, err)
		}
		c.SP = m.SP
	}
	c.Device, c.Concurrency, c.WorkersPerMachine, c.MemoryLimit = plan.GPU, 1, 1, 0
	memFrom := "--device-memory"
	gpu, here := gpuZero()
	if here && !f.deviceMemorySet {
		mem, memFrom = int64(gpu.MemoryFree), fmt.Sprintf("free on GPU 0 (%s), from NVML", gpu.Name)
	}
	rate, rateFrom := f.matmulGFLOPS, "given"
	if rate == 0 {
		rate, rateFrom = gpuBF16GFLOPS, "H100 SXM bf16 dense peak (assumed)"
		if p, ok := device.PeakFLOPs(gpu.Name, "bfloat16"); here && ok {
			rate, rateFrom = p/1e9, gpu.Name+" bf16 dense peak"
		}
	}
	if err := c.Validate(); err != nil {
		return err
	}
	today := c.AsToday()
	today.MatmulGFLOPS = rate / 2 // float32 matmuls as TF32: half the bf16 rate
	mixed := c.WithBF16ZeRO()
	mixed.MatmulGFLOPS = rate
	ps := []planned{
		newPlanned("torus", today, mem, memFrom, rateFrom+", halved for TF32"),
		newPlanned("bf16-zero", mixed, mem, memFrom, rateFrom),
	}
	if len(f.assume) > 0 {
		more := mixed
		for _, a := range f.assume {
			switch name, val, _ := strings.Cut(a, "="); name {
			case "flash-attn-grad":
				return fmt.Errorf("plan: --assume flash-attn-grad: torus itself now accumulates dK/dV per key block (issue 18), and every plan counts it: drop the flag")
			case "optimizer-host":
				more.OptimizerOnHost = true
			case "tile":
				n, err := strconv.Atoi(val)
				if err != nil || n < 1 {
					return fmt.Errorf("plan: --assume tile=%q: want a token count, e.g. tile=16384", val)
				}
				more.TileTokens = n
			default:
				return fmt.Errorf("plan: --assume %q: want tile=TOKENS or optimizer-host", a)
			}
		}
		ps = append(ps, newPlanned("assumed", more, mem, memFrom, rateFrom))
	}
	if f.json {
		return printJSON(w, path, "gpu", ps)
	}
	gpus := "1 GPU"
	if c.Workers() > 1 {
		gpus = fmt.Sprintf("%d GPUs", c.Workers())
	}
	fmt.Fprintf(w, "torus plan: %s on %s of %s (a plan: torus has no GPU backend yet)\n", path, gpus, plan.Bytes(mem))
	if memFrom != "--device-memory" {
		fmt.Fprintf(w, "device memory: %s %s (of %s); --device-memory overrides\n", plan.Bytes(mem), memFrom, plan.Bytes(int64(gpu.MemoryTotal)))
	}
	printSetup(w, c)
	printReport(w, "as torus runs today (float32, AdamW moments replicated): per GPU, at its peak", ps[0].Report)
	verdict(w, ps[0])
	printGPUTime(w, ps[0])
	for _, p := range ps[1:] {
		printReport(w, fmt.Sprintf("with %s: per GPU, at its peak", strings.Join(p.Report.Techniques, ", ")), p.Report)
		verdict(w, p)
		printGPUTime(w, p)
	}
	return nil
}

// gpuZero is GPU 0 as NVML reports it now, and whether there is one (false on
// a machine without the NVIDIA driver).
func gpuZero() (device.GPU, bool) {
	gpus, err := device.GPUs()
	if err != nil || len(gpus) == 0 {
		return device.GPU{}, false
	}
	return gpus[0], true
}

func printJSON(w io.Writer, path, device string, ps []planned) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"recipe": path, "device": device, "plans": ps})
}

func workers(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}

func printSetup(w io.Writer, c plan.Config) {
	m := c.Model
	fmt.Fprintf(w, "model: %d layers, dim %d, %d heads (%d kv) of %d, mlp %d, vocab %d: %s parameters\n",
		m.Layers, m.Dim, m.Heads, m.KVHeads, m.HeadDimension(), m.MLPDim, m.Vocab, plan.Count(plan.NumParams(m)))
	chunk := "off"
	if c.LossChunk > 0 {
		chunk = strconv.Itoa(c.LossChunk)
	}
	fmt.Fprintf(w, "step: seq_len %d, sp %d (%s), dp %d: %d tokens per worker, grad_accum %d; recompute %s, offload %s, attention blocks %d x %d, loss_chunk %s\n",
		c.SeqLen, c.SP, c.Strategy, c.DP, c.SeqLen/c.SP, c.GradAccum, c.Recompute, c.Offload, c.AttnBlockQ, c.AttnBlockK, chunk)
}

func printReport(w io.Writer, title string, r plan.Report) {
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, c := range r.Components {
		fmt.Fprintf(w, "  %-20s %11s   %s\n", c.Name, plan.Bytes(c.Bytes), c.Note)
	}
	fmt.Fprintf(w, "  %-20s %11s\n", "total", plan.Bytes(r.Total))
	if r.Host > 0 {
		fmt.Fprintf(w, "  %-20s %11s   per worker, beside the device (offloaded activations, optimizer state)\n", "host memory", plan.Bytes(r.Host))
	}
}

// verdict prints whether a plan fits and, if not, the smallest change that does.
func verdict(w io.Writer, p planned) {
	r, c := p.Report, p.config
	need := "needs " + plan.Bytes(r.Need())
	if c.Device == plan.CPU && c.WorkersPerMachine > 1 {
		need = fmt.Sprintf("needs %d workers x %s = %s", c.WorkersPerMachine, plan.Bytes(r.Total), plan.Bytes(r.Need()))
	}
	memDesc := fmt.Sprintf("%s (%s)", plan.Bytes(p.Memory), p.MemoryFrom)
	if c.Device == plan.GPU {
		memDesc = plan.Bytes(p.Memory) + " per GPU"
	}
	if p.Fits {
		fmt.Fprintf(w, "verdict: FITS: %s of %s\n", need, memDesc)
		if high := r.NeedHigh(); high > p.Memory {
			if mib, ok := r.LimitFor(p.Memory); ok {
				fmt.Fprintf(w, "  but the Go collector's timing can take it to %s: memory.limit_mib: %d holds it\n", plan.Bytes(high), mib)
			} else {
				fmt.Fprintf(w, "  but the Go collector's timing can take it to %s\n", plan.Bytes(high))
			}
		}
		return
	}
	fmt.Fprintf(w, "verdict: DOES NOT FIT: %s, %s available\n", need, memDesc)
	s := p.Suggestion
	changes := strings.Join(s.Changes, ", then ")
	switch {
	case s.Fits && !s.InTorus:
		fmt.Fprintf(w, "  to fit (needs what torus does not have yet): %s -> %s\n", changes, plan.Bytes(s.Need))
	case s.Fits:
		fmt.Fprintf(w, "  to fit: %s -> %s\n", changes, plan.Bytes(s.Need))
	case len(s.Changes) > 0:
		fmt.Fprintf(w, "  no change tried fits; the closest: %s -> %s\n", changes, plan.Bytes(s.Need))
	default:
		fmt.Fprintf(w, "  no change tried fits\n")
	}
}

func printGPUTime(w io.Writer, p planned) {
	r := p.Report
	fmt.Fprintf(w, "step time: %.4g TFLOP per GPU / (%.0f TFLOP/s, %s, x %.2f efficiency) = %s; model FLOPs utilization %.0f%%\n",
		r.FLOPs/1e12, r.RateGFLOPS/1e3, p.RateFrom, r.Efficiency, seconds(r.StepSeconds), 100*p.ModelFLOPs/r.FLOPs*r.Efficiency)
}

func seconds(s float64) string {
	if s >= 100 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.3g s", s)
}
