// Package plan predicts what one worker of a training run needs before it runs:
// its peak memory by component, the time of one step, and, where the peak does
// not fit the memory at hand, the smallest change to the recipe that makes it fit.
//
// The prediction is arithmetic on the recipe's shapes: it mirrors what torus's
// step holds at its peak (trainer.Engine, model.BlockAttention, parallel's ring
// and Ulysses schedules, optim.AdamW), piece by piece, and adds two measured
// constants of the machine's software (the Go runtime's baseline and the Go
// garbage collector's headroom; see Constants and docs/plan.md).
//
//	r := plan.Plan(plan.Config{
//		Model: model.Config{Vocab: 256, Dim: 256, Layers: 4, Heads: 8, KVHeads: 4, MLPDim: 688},
//		Precision: plan.FP32, SeqLen: 16384, SP: 1, DP: 1, GradAccum: 1,
//		Recompute: "layer", Offload: "none", AttnBlockQ: 512, AttnBlockK: 512, LossChunk: 2048,
//		Device: plan.CPU, Concurrency: 2, GCFactor: 2, MatmulGFLOPS: 170,
//	})
//	fmt.Println(r.Total, r.TransientPiece, r.StepSeconds)
//	if !r.Fits(mem) {
//		s := plan.Suggest(cfg, mem) // the first change, in a fixed order, that fits
//	}
//
// On the GPU the plan describes the same schedule with device memory. It has
// not been checked against the CUDA backend on a GPU yet (the CPU plan has, by
// bench/plan), so those plans say what the schedule needs from shapes, as torus
// runs today (float32, replicated optimizer) and with the techniques published
// long-sequence runs use (bf16 mixed precision, optimizer sharding, MLP tiling),
// each named in the Config so a plan never claims a technique silently.
package plan
