// Package trainer is the training step and the run loop. Engine is the schedule
// of DESIGN.md's "One training step": embed, then per layer PreAttn -> attention
// -> PostAttn keeping only what the ActivationStore is given, the loss head, and
// backward in reverse with each layer recomputed from what was kept. The
// attention is an Attention value: blockwise on one worker, or a ring or Ulysses
// schedule across workers (package parallel); the engine never asks which.
//
// Trainer wraps the engine with the data loader, AdamW, the schedule, gradient
// accumulation and, in a parallel job, the bucketed gradient all-reduce:
//
//	t, _ := trainer.New(cfg, nil) // nil: one worker
//	err := t.Run(ctx, trainer.RunDir("runs/x"), func(s trainer.StepStats) { ... })
package trainer
