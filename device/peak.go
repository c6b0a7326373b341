package device

import "strings"

// peak is one GPU model's dense peak matmul rate by number format, FLOP/s.
type peak struct {
	match      []string // every one of these in the NVML name, case-insensitive
	bf16, tf32 float64  // tensor cores, dense (half the "with sparsity" figure)
	fp32       float64  // CUDA cores: float32 matmuls with TF32 off
}

// peaks are NVIDIA's datasheet figures, dense (no 2:4 sparsity), boost clock:
//
//	H100 SXM5 / H200 SXM: NVIDIA H100 Tensor Core GPU datasheet, H200 datasheet
//	  (1,979 TFLOPS bf16 and 989 tf32 "with sparsity"; 67 fp32)
//	H100 NVL / H200 NVL: the same datasheets, NVL column (1,671 bf16, 835 tf32 sparse; 60 fp32)
//	H100 PCIe: H100 datasheet, PCIe column (1,513 bf16, 756 tf32 sparse; 51 fp32)
//	A100 (SXM4 and PCIe, 40 and 80 GB): A100 datasheet (312 bf16, 156 tf32 dense; 19.5 fp32)
//	L40S: L40S datasheet (733 bf16, 366 tf32 sparse; 91.6 fp32)
//	RTX 4090: Ada Lovelace architecture whitepaper, appendix table (165.2 bf16
//	  with fp32 accumulate, 82.6 tf32, 82.6 fp32, dense)
//
// Order matters: the NVL and PCIe variants before the SXM figure their name
// also matches.
var peaks = []peak{
	{match: []string{"H200", "NVL"}, bf16: 835e12, tf32: 417.5e12, fp32: 60e12},
	{match: []string{"H200"}, bf16: 989e12, tf32: 494e12, fp32: 67e12},
	{match: []string{"H100", "NVL"}, bf16: 835e12, tf32: 417.5e12, fp32: 60e12},
	{match: []string{"H100", "PCIE"}, bf16: 756e12, tf32: 378e12, fp32: 51e12},
	{match: []string{"H100"}, bf16: 989e12, tf32: 494e12, fp32: 67e12}, // "NVIDIA H100 80GB HBM3" is the SXM5
	{match: []string{"A100"}, bf16: 312e12, tf32: 156e12, fp32: 19.5e12},
	{match: []string{"L40S"}, bf16: 362e12, tf32: 183e12, fp32: 91.6e12},
	{match: []string{"RTX 4090"}, bf16: 165e12, tf32: 82.6e12, fp32: 82.6e12},
}

// PeakFLOPs is the dense peak matmul rate, FLOP/s, of the GPU NVML names
// gpuName ("NVIDIA H200") for matmuls in dtype: "bfloat16" (also "bf16",
// "float16", "fp16": the same tensor-core rate), "tf32", or "float32" (TF32
// off: the CUDA cores). false when the GPU or the dtype is not in the table.
func PeakFLOPs(gpuName, dtype string) (float64, bool) {
	name := strings.ToUpper(gpuName)
	for _, p := range peaks {
		if !containsAll(name, p.match) {
			continue
		}
		var r float64
		switch strings.ToLower(dtype) {
		case "bfloat16", "bf16", "float16", "fp16", "half":
			r = p.bf16
		case "tf32":
			r = p.tf32
		case "float32", "fp32", "f32":
			r = p.fp32
		}
		return r, r > 0
	}
	return 0, false
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
