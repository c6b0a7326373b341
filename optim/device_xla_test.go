//go:build xla

package optim_test

import (
	"os"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/go-xla/compute/xla"
)

// With -tags xla (cgo) and TORUS_TEST_PJRT_PLUGIN naming a PJRT plugin file (the
// CUDA one of a JAX install), the device tests and BenchmarkAdamW also run on XLA:
//
//	go test -c -tags xla -o optim-xla.test ./optim
//	TORUS_TEST_PJRT_PLUGIN=.../xla_cuda_plugin.so ./optim-xla.test -test.v
func init() {
	plugin := os.Getenv("TORUS_TEST_PJRT_PLUGIN")
	if plugin == "" {
		return
	}
	os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
	testBackends = append(testBackends, backend{"xla", sync.OnceValues(func() (compute.Backend, error) {
		b, err := xla.NewWithOptions(plugin+",preallocate=false,tf32=false", nil)
		if err != nil {
			return nil, err // not a nil *xla.Backend in a non-nil interface
		}
		return b, nil
	})})
}
