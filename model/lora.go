package model

import (
	"github.com/gomlx/compute/dtypes"
)

// LoadInference reads a model folder for evaluation and generation: a Hugging
// Face folder or a checkpoint folder (which is one), with any LoRA adapters it
// holds merged into the weights.
func LoadInference(dir string, dtype dtypes.DType) (*Params, error) {
	return LoadHF(dir, dtype)
}
