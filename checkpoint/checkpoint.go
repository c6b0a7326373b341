package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
)

// Format is the manifest's "format" value; a manifest with another is refused.
const Format = "torus-checkpoint-v1"

// File names inside one checkpoint folder (DESIGN.md, "On disk").
const (
	ManifestFile = "manifest.json"
	ModelFile    = "model.safetensors" // parameters by Hugging Face name
	ConfigFile   = "config.json"       // Hugging Face LlamaForCausalLM config of the model
	LatestFile   = "latest"            // in the ckpt folder: the name of the newest complete checkpoint
)

// OptimFile is the optimizer state file of one rank ("optim-rank-00.safetensors").
func OptimFile(rank int) string { return fmt.Sprintf("optim-rank-%02d.safetensors", rank) }

// Name is the folder name of the checkpoint of a step ("step-000100").
func Name(step int) string { return fmt.Sprintf("step-%06d", step) }

// ErrNoCheckpoint is returned (wrapped) by Latest when the ckpt folder holds no
// checkpoint yet: a run that starts fresh tests for it with errors.Is.
var ErrNoCheckpoint = errors.New("no checkpoint")

var stepName = regexp.MustCompile(`^step-(\d{6,})$`)

// stepOf is the step of a checkpoint folder name, ok only for the names Name makes.
func stepOf(name string) (step int, ok bool) {
	m := stepName.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	step, err := strconv.Atoi(m[1])
	if err != nil || Name(step) != name { // "step-0000100" is no name of ours
		return 0, false
	}
	return step, true
}

// World is the worker layout a checkpoint was written with.
type World struct {
	Workers  int    `json:"workers"`
	SP       int    `json:"sp"`
	DP       int    `json:"dp"`
	Strategy string `json:"strategy,omitempty"`
}

// Snapshot is everything a checkpoint holds, owned by the checkpoint once given
// to Save or Writer.Submit (the trainer hands over copies, then goes on).
type Snapshot struct {
	Step       int             // optimizer steps taken
	TokensSeen int64           // target tokens trained on so far
	Cursor     json.RawMessage // data.Cursor of the next step, as JSON
	RNG        json.RawMessage // random state, as JSON
	RecipeHash string          // sha256 of the resolved recipe
	World      World
	Params     *model.Params // the model: written as config.json + model.safetensors
	// Optim is the optimizer state by key (AdamW: "<param>.exp_avg", "<param>.exp_avg_sq"),
	// written to OptimFile(0); OptimMeta (e.g. {"type":"adamw","steps":"12"}) goes into its
	// safetensors metadata and the manifest. A nil Optim writes no optimizer file (and
	// Load returns a nil map); an empty one writes a file with no tensors.
	Optim     map[string]*tensors.Tensor
	OptimMeta map[string]string
	// Files are more files of the model folder, written as they are and
	// listed in the manifest: the tokenizer's (tokenizer.json,
	// tokenizer_config.json, ...), so that the checkpoint, and what is
	// exported from it, loads with its tokenizer. Names are plain file names
	// that none of the checkpoint's own files has.
	Files map[string][]byte
}

// FileEntry is one file of a checkpoint, as the manifest lists it.
type FileEntry struct {
	Path   string `json:"path"`   // a plain file name inside the checkpoint folder
	Bytes  int64  `json:"bytes"`  // size
	CRC32C string `json:"crc32c"` // Castagnoli CRC-32 of the contents, 8 lowercase hex digits
}

// Manifest is manifest.json. On disk it carries one more field, last:
// "manifest_crc32c", the checksum of the manifest's own bytes (see ParseManifest).
type Manifest struct {
	Format     string            `json:"format"`
	Step       int               `json:"step"`
	TokensSeen int64             `json:"tokens_seen"`
	Cursor     json.RawMessage   `json:"data_cursor"`
	RNG        json.RawMessage   `json:"rng"`
	RecipeHash string            `json:"recipe_sha256"`
	World      World             `json:"world"`
	Optim      map[string]string `json:"optim"`
	Created    string            `json:"created"` // RFC 3339, UTC
	Files      []FileEntry       `json:"files"`   // every file but manifest.json, by path
}

// Policy is which checkpoints are kept after each commit.
type Policy struct {
	KeepLast  int // the newest KeepLast are kept (0: all)
	KeepEvery int // and every one whose step is a multiple of KeepEvery (0: none extra)
}

// Validate refuses negative counts.
func (p Policy) Validate() error {
	switch {
	case p.KeepLast < 0:
		return fmt.Errorf("checkpoint: keep_last must be >= 0, got %d", p.KeepLast)
	case p.KeepEvery < 0:
		return fmt.Errorf("checkpoint: keep_every must be >= 0, got %d", p.KeepEvery)
	}
	return nil
}

// Info is one complete checkpoint of a ckpt folder, for listing.
type Info struct {
	Name       string // step-000100
	Path       string
	Step       int
	TokensSeen int64
	Bytes      int64 // all its files, manifest.json included
}

// Checkpoint is an opened, manifest-validated checkpoint folder.
type Checkpoint struct {
	Dir      string
	Manifest Manifest

	manifest []byte // manifest.json as Open read it; Verify checks it is unchanged
}
