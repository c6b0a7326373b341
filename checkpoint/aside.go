package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SetAside moves the checkpoint folders of ckptDir whose step is past step
// into ckptDir/abandoned-TIMESTAMP/, and points latest at the newest one left
// (or at resumed, a checkpoint name). A run resumed from an older checkpoint
// takes another course from there; the checkpoints of the course it left are
// kept, out of the way of its own (which would have the same names), not
// deleted. It returns the moved folders' new paths.
func SetAside(ckptDir string, step int) ([]string, error) {
	steps, err := stepFolders(ckptDir)
	if err != nil {
		return nil, err
	}
	var moved []string
	var aside string
	for _, s := range steps {
		if s <= step {
			continue
		}
		if aside == "" {
			aside = filepath.Join(ckptDir, "abandoned-"+time.Now().UTC().Format("20060102-150405.000000"))
			if err := os.Mkdir(aside, 0o755); err != nil {
				return nil, fmt.Errorf("checkpoint: %w", err)
			}
		}
		to := filepath.Join(aside, Name(s))
		if err := os.Rename(filepath.Join(ckptDir, Name(s)), to); err != nil {
			return moved, fmt.Errorf("checkpoint: set aside %s: %w", Name(s), err)
		}
		moved = append(moved, to)
	}
	if len(moved) == 0 {
		return nil, nil
	}
	newest := -1
	for _, s := range steps {
		if s <= step {
			newest = s
		}
	}
	if newest < 0 {
		err = os.Remove(filepath.Join(ckptDir, LatestFile))
	} else {
		err = setLatest(ckptDir, Name(newest))
	}
	if err != nil {
		return moved, fmt.Errorf("checkpoint: %w", err)
	}
	return moved, syncDir(ckptDir)
}
