// Package device owns what torus computes on: the compute backend (GoMLX's pure-Go
// CPU backend, or XLA through a CUDA PJRT plugin found on this machine, never
// downloaded) and what NVML says of the GPUs.
//
//	b, err := device.Open("auto", device.Options{}) // cuda when a plugin and a GPU are here, else cpu
//	fmt.Println(b.Describe())                       // "backend cuda: NVIDIA H200 (plugin /opt/...)"
//	pieces, _ := model.NewPieces(b, cfg)
//
// It imports none of torus's packages: the trainer, eval, plan and the command
// line all open their backend here.
package device
