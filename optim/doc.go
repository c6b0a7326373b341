// Package optim holds the optimizer arithmetic of torus: AdamW with decoupled weight
// decay, clipping by global gradient norm, and learning-rate schedules. It imports
// nothing of torus, so it can be tested plainly and later sharded (ZeRO-1) by
// handing each worker a slice of the parameters.
//
// It comes twice. AdamW, GlobalNorm, ClipGlobalNorm and Scale work on flat float32
// or float64 host slices:
//
//	opt := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1})
//	norm := optim.ClipGlobalNorm(maxNorm, grads...)
//	opt.Step(lr, params)
//
// Kernels and DeviceAdamW do the same as compiled GoMLX graphs on tensors, so on a
// GPU parameters, gradients and moments stay on the device (only the norm, 8 bytes,
// comes back), with bitwise the same results:
//
//	k, err := optim.NewKernels(backend)
//	opt := optim.NewDeviceAdamW(k, cfg)
//	acc, err = k.Accumulate(acc, grad)          // acc donated, the sum returned
//	norm, err = k.ClipGlobalNorm(maxNorm, grads) // scaled tensors replaced in grads
//	err = opt.Step(lr, params)                  // each params[i].Value donated, replaced
//
// Both optimizers implement Optimizer (step count and state), whose State and
// SetState keys are PyTorch's, so a checkpoint written from one resumes the other.
package optim
