package model_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func rawBytes(t *tensors.Tensor) []byte {
	var out []byte
	if err := t.ConstBytes(func(b []byte) { out = bytes.Clone(b) }); err != nil {
		panic(err)
	}
	return out
}
