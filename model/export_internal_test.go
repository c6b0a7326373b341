package model

import (
	"reflect"
	"slices"
	"testing"
)

func TestSplitHFShards(t *testing.T) {
	const gb = 1_000_000_000
	for _, c := range []struct {
		name  string
		sizes []int64
		limit int64
		want  []hfShard
	}{
		// The example of huggingface_hub's split_state_dict_into_shards_factory docstring.
		{"hub example", []int64{6 * gb, 6 * gb, 2 * gb, 6 * gb, 2 * gb, 2 * gb}, 10 * gb, []hfShard{
			{"model-00001-of-00003.safetensors", []string{"t0"}},
			{"model-00002-of-00003.safetensors", []string{"t1", "t2"}},
			{"model-00003-of-00003.safetensors", []string{"t3", "t4", "t5"}},
		}},
		{"fits exactly", []int64{4, 6}, 10, []hfShard{{"model.safetensors", []string{"t0", "t1"}}}},
		{"one over the limit", []int64{11}, 10, []hfShard{{"model.safetensors", []string{"t0"}}}},
		// A tensor over the limit gets a shard of its own, listed when it is met,
		// ahead of the shard still filling (as the hub's splitter does).
		{"oversized in the middle", []int64{3, 12, 4, 2}, 10, []hfShard{
			{"model-00001-of-00002.safetensors", []string{"t1"}},
			{"model-00002-of-00002.safetensors", []string{"t0", "t2", "t3"}},
		}},
		{"oversized after a full shard", []int64{6, 5, 12, 1}, 10, []hfShard{
			{"model-00001-of-00003.safetensors", []string{"t0"}},
			{"model-00002-of-00003.safetensors", []string{"t2"}},
			{"model-00003-of-00003.safetensors", []string{"t1", "t3"}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			names := make([]string, len(c.sizes))
			for i := range names {
				names[i] = "t" + string(rune('0'+i))
			}
			if got := splitHFShards(names, c.sizes, c.limit); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestHFStateDictOrderHasEveryParam(t *testing.T) {
	for _, tc := range []struct{ tied, qkvBias, oBias bool }{{false, false, false}, {true, false, false}, {false, true, false}, {true, true, true}} {
		c := Config{Vocab: 8, Dim: 4, Layers: 3, Heads: 2, KVHeads: 1, MLPDim: 6, RopeTheta: 1e4, NormEps: 1e-5,
			TieEmbeddings: tc.tied, QKVBias: tc.qkvBias, OBias: tc.oBias}
		got, want := hfStateDictOrder(c), c.ParamNames()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%+v: state dict order lists %v, params are %v", tc, got, want)
		}
	}
}
