package checkpoint

// Reading: latest, listing, opening, verifying and loading checkpoints.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
)

// Latest is the path of the newest complete checkpoint of ckptDir: the one
// ckptDir/latest names, or a newer step-NNNNNN folder whose manifest opens. The
// rename of a checkpoint's folder to step-NNNNNN is its commit and latest is
// rewritten just after it, so a crash between the two leaves a complete
// checkpoint that latest does not name yet (or no latest file at all). Without
// either the error wraps ErrNoCheckpoint.
func Latest(ckptDir string) (string, error) {
	name, err := readLatest(ckptDir)
	if err != nil && !errors.Is(err, ErrNoCheckpoint) {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	named := -1
	if err == nil {
		named, _ = stepOf(name)
	}
	steps, serr := stepFolders(ckptDir)
	if serr != nil {
		return "", serr
	}
	for i := len(steps) - 1; i >= 0 && steps[i] > named; i-- {
		dir := filepath.Join(ckptDir, Name(steps[i]))
		if _, oerr := Open(dir); oerr == nil {
			return dir, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	dir := filepath.Join(ckptDir, name)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("checkpoint: %s names %s, which is not a folder there", filepath.Join(ckptDir, LatestFile), name)
	}
	return dir, nil
}

// readLatest is the checkpoint name in ckptDir/latest, validated.
func readLatest(ckptDir string) (string, error) {
	path := filepath.Join(ckptDir, LatestFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w in %s: no %s file", ErrNoCheckpoint, ckptDir, LatestFile)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", err
	}
	name := strings.TrimSuffix(string(b), "\n")
	if _, ok := stepOf(name); !ok {
		return "", fmt.Errorf("%s: %q is not a checkpoint name (step-NNNNNN)", path, name)
	}
	return name, nil
}

// List lists the complete checkpoints of ckptDir, oldest first: the step-NNNNNN
// folders whose manifest opens (Open; the checksums are not read). A missing
// ckptDir has none.
func List(ckptDir string) ([]Info, error) {
	steps, err := stepFolders(ckptDir)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, step := range steps {
		c, err := Open(filepath.Join(ckptDir, Name(step)))
		if err != nil {
			continue // not complete
		}
		out = append(out, Info{Name: Name(step), Path: c.Dir, Step: step, TokensSeen: c.Manifest.TokensSeen, Bytes: c.Bytes()})
	}
	return out, nil
}

// Open reads dir/manifest.json (ParseManifest) and checks that every file it
// lists is a regular file of the listed size. A folder named step-NNNNNN must
// hold the checkpoint of that step. Errors name the folder and the file.
func Open(dir string) (*Checkpoint, error) {
	raw, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	m, err := ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if step, ok := stepOf(filepath.Base(dir)); ok && step != m.Step {
		return nil, fmt.Errorf("checkpoint %s: %s: step %d, but the folder is named for step %d", dir, ManifestFile, m.Step, step)
	}
	for _, f := range m.Files {
		fi, err := os.Lstat(filepath.Join(dir, f.Path))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checkpoint %s: %s: missing (%s lists it)", dir, f.Path, ManifestFile)
		case err != nil:
			return nil, fmt.Errorf("checkpoint %s: %s: %w", dir, f.Path, err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("checkpoint %s: %s: not a regular file (%s)", dir, f.Path, fi.Mode().Type())
		case fi.Size() != f.Bytes:
			return nil, fmt.Errorf("checkpoint %s: %s: size %d, manifest says %d", dir, f.Path, fi.Size(), f.Bytes)
		}
	}
	return &Checkpoint{Dir: dir, Manifest: m, manifest: raw}, nil
}

// readManifest reads dir/manifest.json, refusing one over the size limit.
func readManifest(dir string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: missing (not a checkpoint, or one not complete)", ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxManifestBytes {
		return nil, fmt.Errorf("%s: %d bytes, over the %d MiB limit", ManifestFile, fi.Size(), maxManifestBytes>>20)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	return b, nil // ParseManifest refuses more than the limit, should the file have grown
}

// Files lists the checkpoint's files, manifest.json included, as paths.
func (c *Checkpoint) Files() []string {
	out := []string{filepath.Join(c.Dir, ManifestFile)}
	for _, f := range c.Manifest.Files {
		out = append(out, filepath.Join(c.Dir, f.Path))
	}
	return out
}

// Bytes is the size of all the checkpoint's files, manifest.json included.
func (c *Checkpoint) Bytes() int64 {
	n := int64(len(c.manifest))
	for _, f := range c.Manifest.Files {
		n += f.Bytes
	}
	return n
}

// Verify reads every file back and checks its size and CRC-32C against the
// manifest, and that manifest.json is still what Open read.
func (c *Checkpoint) Verify() error {
	if c.manifest != nil {
		raw, err := readManifest(c.Dir)
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", c.Dir, err)
		}
		if !bytes.Equal(raw, c.manifest) {
			return fmt.Errorf("checkpoint %s: %s: changed since the checkpoint was opened", c.Dir, ManifestFile)
		}
	}
	for _, f := range c.Manifest.Files {
		n, sum, err := fileSum(filepath.Join(c.Dir, f.Path))
		switch {
		case err != nil:
			return fmt.Errorf("checkpoint %s: %s: %w", c.Dir, f.Path, err)
		case n != f.Bytes:
			return fmt.Errorf("checkpoint %s: %s: size %d, manifest says %d", c.Dir, f.Path, n, f.Bytes)
		case crcText(sum) != f.CRC32C:
			return fmt.Errorf("checkpoint %s: %s: checksum %s, manifest says %s (the file is corrupt)", c.Dir, f.Path, crcText(sum), f.CRC32C)
		}
	}
	return nil
}

// Load verifies the checkpoint, then reads the model (in dtype, Float32 or
// Float64) and the optimizer state of rank 0, each tensor as stored (nil when the
// checkpoint has no optimizer file).
func (c *Checkpoint) Load(dtype dtypes.DType) (*model.Params, map[string]*tensors.Tensor, error) {
	return c.LoadKeeping(dtype, nil)
}

// LoadKeeping is Load keeping the model tensors keep names in their stored
// half-precision dtype (a LoRA run's frozen base: model.LoadHFKeeping).
func (c *Checkpoint) LoadKeeping(dtype dtypes.DType, keep func(name string) bool) (*model.Params, map[string]*tensors.Tensor, error) {
	if err := c.Verify(); err != nil {
		return nil, nil, err
	}
	p, err := model.LoadHFKeeping(c.Dir, dtype, keep)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: %w", c.Dir, err)
	}
	if slices.ContainsFunc(c.Manifest.Files, func(f FileEntry) bool { return f.Path == model.AdapterConfigFile }) {
		if err := model.ReadAdapters(c.Dir, p); err != nil {
			return nil, nil, fmt.Errorf("checkpoint %s: %w", c.Dir, err)
		}
	}
	if !slices.ContainsFunc(c.Manifest.Files, func(f FileEntry) bool { return f.Path == OptimFile(0) }) {
		return p, nil, nil
	}
	opt, _, err := safetensors.ReadRaw(filepath.Join(c.Dir, OptimFile(0)))
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: %w", c.Dir, err)
	}
	return p, opt, nil
}
