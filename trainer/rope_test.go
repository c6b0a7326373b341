package trainer_test

import (
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

// Config.RopeScaling replaces the rope_scaling of the model.from folder, and is
// validated against its config.
func TestRopeScalingOverridesFrom(t *testing.T) {
	cfg := parityConfig(t, dtypes.Float32, 16, 1)
	cfg.Model.MaxPositions = 64
	p, err := model.Init(cfg.Model, dtypes.Float32, 0.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.From = t.TempDir()
	if err := model.SaveHF(cfg.From, p, ""); err != nil {
		t.Fatal(err)
	}
	yarn := model.RopeScaling{Type: "yarn", Factor: 4}
	cfg.RopeScaling = &yarn
	tr, err := trainer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Params.Config.RopeScaling; got != yarn {
		t.Errorf("rope_scaling %+v, want %+v", got, yarn)
	}
	cfg.RopeScaling = &model.RopeScaling{Type: "linear", Factor: 0.5}
	if _, err := trainer.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "rope_scaling factor must be >= 1") {
		t.Errorf("factor 0.5 over model.from: error %v", err)
	}
}
