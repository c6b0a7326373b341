// Package optim holds the optimizer arithmetic of torus: AdamW with decoupled weight
// decay, clipping by global gradient norm, and learning-rate schedules. It works on
// flat float32 or float64 slices and imports nothing of torus, so it can be tested
// plainly and later sharded (ZeRO-1) by handing each worker a slice of the parameters.
//
//	opt := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1})
//	norm := optim.GlobalNorm(grads...)
//	optim.Scale(min(1, maxNorm/norm), grads...)
//	opt.Step(lr, params)
package optim
