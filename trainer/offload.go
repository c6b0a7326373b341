package trainer

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

// DiskStore is memory.offload: disk. Put starts writing a layer's saved
// tensors to a file of its own in Dir and returns; once written they are
// released, so what stays resident is the layers being written and the last
// layer (needed first in backward, never spilled). Get returns a layer and
// starts reading the one below it, so backward finds the next layer's
// tensors already read (prefetch in reverse layer order). Files are removed
// as soon as they are read back; NewDiskStore removes what a crashed run left.
//
// Every file carries its size and CRC-32C in memory: a spill file deleted,
// truncated or changed under the run is an error naming it, never a wrong
// result. Put and Get are called from one goroutine, as ActivationStore says.
type DiskStore struct {
	Dir    string
	layers int

	mu       sync.Mutex
	resident map[int][]*tensors.Tensor // not spilled, or being written, or read back
	pending  map[int]chan error        // writes in flight
	prefetch map[int]chan readResult   // reads in flight
	files    map[int]spillFile
}

type spillFile struct {
	path   string
	shapes []shapes.Shape
	size   int64
	sum    uint32
}

type readResult struct {
	ts  []*tensors.Tensor
	err error
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewDiskStore makes the spill folder dir (for a model of the given number of
// layers), removing the spill files a previous run left there, and checks that
// it can write into it.
func NewDiskStore(dir string, layers int) (*DiskStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("offload: %w", err)
	}
	old, err := filepath.Glob(filepath.Join(dir, "layer-*.act"))
	if err != nil {
		return nil, fmt.Errorf("offload: %w", err)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("offload: remove a spill file a previous run left: %w", err)
		}
	}
	probe := filepath.Join(dir, "layer-probe.act")
	if err := os.WriteFile(probe, []byte("torus"), 0o644); err != nil {
		return nil, fmt.Errorf("offload: spill folder %s is not writable: %w", dir, err)
	}
	os.Remove(probe)
	return &DiskStore{
		Dir: dir, layers: layers,
		resident: map[int][]*tensors.Tensor{}, pending: map[int]chan error{},
		prefetch: map[int]chan readResult{}, files: map[int]spillFile{},
	}, nil
}

func (s *DiskStore) path(layer int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("layer-%04d.act", layer))
}

// Put keeps the last layer in memory and starts spilling any other.
func (s *DiskStore) Put(layer int, ts []*tensors.Tensor) error {
	if err := s.firstError(); err != nil {
		return err
	}
	s.mu.Lock()
	s.resident[layer] = ts
	s.mu.Unlock()
	if layer == s.layers-1 {
		return nil
	}
	done := make(chan error, 1)
	s.pending[layer] = done
	go func() {
		f, err := s.write(layer, ts)
		s.mu.Lock()
		if err == nil {
			s.files[layer] = f
			delete(s.resident, layer)
		}
		s.mu.Unlock()
		if err == nil {
			for _, t := range ts { // on disk now: give the memory back at once
				t.FinalizeAll()
			}
		}
		done <- err
	}()
	return nil
}

// firstError is the error of a finished write, if any (the others keep going).
func (s *DiskStore) firstError() error {
	for l, done := range s.pending {
		select {
		case err := <-done:
			delete(s.pending, l)
			if err != nil {
				return err
			}
		default:
		}
	}
	return nil
}

func (s *DiskStore) write(layer int, ts []*tensors.Tensor) (spillFile, error) {
	f := spillFile{path: s.path(layer)}
	file, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return f, fmt.Errorf("offload: layer %d: %w", layer, err)
	}
	bw := bufio.NewWriterSize(file, 1<<20)
	for _, t := range ts {
		f.shapes = append(f.shapes, t.Shape())
		err = t.ConstBytes(func(b []byte) {
			f.sum = crc32.Update(f.sum, castagnoli, b)
			f.size += int64(len(b))
			_, err = bw.Write(b)
		})
		if err != nil {
			break
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.path)
		return f, fmt.Errorf("offload: layer %d: write %s: %w", layer, f.path, err)
	}
	return f, nil
}

// Get returns a layer's tensors (waiting for its write, or its prefetch, to
// finish) and starts reading the layer below.
func (s *DiskStore) Get(layer int) ([]*tensors.Tensor, error) {
	if done, ok := s.pending[layer]; ok { // still being written: its tensors are here anyway
		if err := <-done; err != nil {
			return nil, err
		}
		delete(s.pending, layer)
	}
	s.startRead(layer - 1)
	var ts []*tensors.Tensor
	if r, reading := s.prefetch[layer]; reading { // read ahead: wait for it, even if done
		res := <-r
		delete(s.prefetch, layer)
		if res.err != nil {
			return nil, res.err
		}
		ts = res.ts
	} else {
		s.mu.Lock()
		inMemory, f := s.resident[layer], s.files[layer]
		s.mu.Unlock()
		switch {
		case inMemory != nil:
			ts = inMemory
		case f.path != "":
			var err error
			if ts, err = s.read(layer, f); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("offload: nothing stored for layer %d", layer)
		}
	}
	s.mu.Lock()
	delete(s.resident, layer)
	s.mu.Unlock()
	return ts, nil
}

// startRead begins reading a spilled layer in the background.
func (s *DiskStore) startRead(layer int) {
	s.mu.Lock()
	f, spilled := s.files[layer]
	s.mu.Unlock()
	if layer < 0 || !spilled || s.prefetch[layer] != nil {
		return
	}
	r := make(chan readResult, 1)
	s.prefetch[layer] = r
	go func() {
		ts, err := s.read(layer, f)
		r <- readResult{ts, err}
	}()
}

// read loads a spilled layer, checks its size and checksum, and removes the file.
func (s *DiskStore) read(layer int, f spillFile) ([]*tensors.Tensor, error) {
	s.mu.Lock()
	delete(s.files, layer)
	s.mu.Unlock()
	file, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("offload: layer %d: spill file lost: %w", layer, err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("offload: layer %d: %w", layer, err)
	}
	if fi.Size() != f.size {
		return nil, fmt.Errorf("offload: layer %d: spill file %s has %d bytes, %d were written: changed under the run", layer, f.path, fi.Size(), f.size)
	}
	br := bufio.NewReaderSize(file, 1<<20)
	var sum uint32
	ts := make([]*tensors.Tensor, len(f.shapes))
	for i, sh := range f.shapes {
		t := tensors.FromShape(sh)
		merr := t.MutableBytes(func(b []byte) {
			if _, err = io.ReadFull(br, b); err == nil {
				sum = crc32.Update(sum, castagnoli, b)
			}
		})
		if err == nil {
			err = merr
		}
		if err != nil {
			return nil, fmt.Errorf("offload: layer %d: read %s: %w", layer, f.path, err)
		}
		ts[i] = t
	}
	if sum != f.sum {
		return nil, fmt.Errorf("offload: layer %d: spill file %s: checksum %08x, %08x was written: changed under the run", layer, f.path, sum, f.sum)
	}
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("offload: layer %d: %w", layer, err)
	}
	s.mu.Lock()
	s.resident[layer] = ts
	s.mu.Unlock()
	return ts, nil
}

// Bytes is what is resident now: layers not spilled, being written, or read back.
func (s *DiskStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return residentBytes(s.resident)
}

// Close waits for writes in flight and removes every spill file.
func (s *DiskStore) Close() error {
	for l, done := range s.pending {
		<-done
		delete(s.pending, l)
	}
	for l, r := range s.prefetch {
		<-r
		delete(s.prefetch, l)
	}
	files, _ := filepath.Glob(filepath.Join(s.Dir, "layer-*.act"))
	var errs []string
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if errs != nil {
		return fmt.Errorf("offload: %s", strings.Join(errs, "; "))
	}
	return nil
}

func residentBytes(m map[int][]*tensors.Tensor) int64 {
	var n int64
	for _, ts := range m {
		for _, t := range ts {
			n += t.ByteSize()
		}
	}
	return n
}
