package safetensors

import "github.com/gomlx/compute/dtypes"

// TensorInfo is one tensor of a safetensors file as its header describes it.
type TensorInfo struct {
	Name  string
	DType dtypes.DType
	Shape []int
	Bytes int64
}

// Header reads and validates the header of a safetensors file (not its data):
// the tensors in file order, and the metadata.
func Header(path string) ([]TensorInfo, map[string]string, error) {
	s, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer s.Close()
	out := make([]TensorInfo, len(s.entries))
	for i, e := range s.entries {
		out[i] = TensorInfo{Name: e.Name, DType: e.DType, Shape: e.Shape, Bytes: e.end - e.begin}
	}
	return out, s.meta, nil
}
