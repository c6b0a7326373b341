package plan

import (
	"fmt"
	"math"
	"strings"
)

// Suggestion is a change to the run that makes it fit, and its plan.
type Suggestion struct {
	Changes []string // in words, in the order applied
	Config  Config
	Report  Report
	// InTorus is false when the plan or a change needs a technique torus
	// does not have (Config.Techniques).
	InTorus bool
}

func (s Suggestion) String() string { return strings.Join(s.Changes, ", then ") }

// change is one knob the suggestions may turn.
type change struct {
	name    string
	inTorus bool
	apply   func(Config, int64) (Config, string, bool) // ok false: not applicable
}

// maxSPDoublings bounds "more workers": up to 64x the workers.
const maxSPDoublings = 6

// changes are the knobs, in the order they are tried: the cheapest first
// (on the CPU a memory limit that stops the Go heap from growing to twice
// what is live; offload costs disk or transfer bandwidth, not compute), then attention
// blocks and a smaller memory.loss_chunk (free, or nearly), then recompute
// (more compute), then techniques torus does not have (GPU plans that already
// assume some), and more workers last (more machines).
func changes(c Config) []change {
	cs := []change{
		{"limit", true, func(c Config, mem int64) (Config, string, bool) {
			mib, ok := Plan(c).LimitFor(mem)
			if !ok || c.MemoryLimit > 0 && c.MemoryLimit <= mib<<20 {
				return c, "", false
			}
			c.MemoryLimit = mib << 20
			return c, fmt.Sprintf("memory.limit_mib: %d", mib), true
		}},
		{"offload", true, func(c Config, _ int64) (Config, string, bool) {
			to := "disk"
			if c.Device == GPU {
				to = "host"
			}
			if c.Offload != "none" && (c.Device == CPU || c.Offload == to) {
				return c, "", false
			}
			c.Offload = to
			return c, "memory.offload: " + to, true
		}},
		{"blocks", true, func(c Config, mem int64) (Config, string, bool) {
			return bestBlocks(c, mem)
		}},
		{"loss_chunk", true, func(c Config, mem int64) (Config, string, bool) {
			return smallerLossChunk(c, mem)
		}},
		{"recompute", true, func(c Config, _ int64) (Config, string, bool) {
			if c.Recompute != "except_attention" {
				return c, "", false
			}
			c.Recompute = "layer"
			return c, "memory.recompute: layer", true
		}},
	}
	if c.Device == GPU && len(c.Techniques()) > 0 { // as torus runs today, only what torus has
		cs = append(cs,
			change{"tile", false, func(c Config, _ int64) (Config, string, bool) {
				if c.TileTokens > 0 {
					return c, "", false
				}
				c.TileTokens = 16384
				return c, "MLP in tiles of 16384 tokens (not in torus)", true
			}},
			change{"opthost", false, func(c Config, _ int64) (Config, string, bool) {
				if c.OptimizerOnHost || c.Precision != BF16Mixed {
					return c, "", false
				}
				c.OptimizerOnHost = true
				return c, "optimizer state in host memory (not in torus)", true
			}})
	}
	return append(cs, change{"workers", true, func(c Config, mem int64) (Config, string, bool) {
		return moreWorkers(c, mem)
	}})
}

// Suggest returns the smallest change that makes c fit memBytes (see
// Report.Fits): each change alone, in the order of changes; failing that, the
// changes one after another, each kept if it lowers the need, until the run
// fits. ok is false when nothing tried fits (the last attempt is returned).
func Suggest(c Config, memBytes int64) (s Suggestion, ok bool) {
	inTorus := len(c.Techniques()) == 0
	if r := Plan(c); r.Fits(memBytes) {
		return Suggestion{Config: c, Report: r, InTorus: inTorus}, true
	}
	cs := changes(c)
	for _, ch := range cs {
		next, what, applies := ch.apply(c, memBytes)
		if !applies {
			continue
		}
		if r := Plan(next); r.Fits(memBytes) {
			return Suggestion{Changes: []string{what}, Config: next, Report: r, InTorus: inTorus && ch.inTorus}, true
		}
	}
	s = Suggestion{Config: c, Report: Plan(c), InTorus: inTorus}
	for _, ch := range cs {
		next, what, applies := ch.apply(s.Config, memBytes)
		if !applies {
			continue
		}
		r := Plan(next)
		if r.Need() >= s.Report.Need() {
			continue
		}
		s.Changes, s.Config, s.Report = append(s.Changes, what), next, r
		s.InTorus = s.InTorus && ch.inTorus
		if r.Fits(memBytes) {
			return s, true
		}
	}
	return s, false
}

// blockSizes are the attention block lengths tried.
var blockSizes = []int{64, 128, 256, 512, 1024, 2048, 4096}

// bestBlocks picks the attention blocks nearest the current ones (in
// doublings) that fit; failing any, those with the least need. Smaller blocks
// shrink the score buffers of the block pairs running at once (the rest of
// the attention backward is as long as the shard, whatever the blocks).
func bestBlocks(c Config, mem int64) (Config, string, bool) {
	best, bestDist, bestNeed, found := c, math.Inf(1), Plan(c).Need(), false
	for _, bq := range blockSizes {
		for _, bk := range blockSizes {
			if bq == c.AttnBlockQ && bk == c.AttnBlockK {
				continue
			}
			next := c
			next.AttnBlockQ, next.AttnBlockK = bq, bk
			need := Plan(next).Need()
			dist := math.Abs(math.Log2(float64(bq)/float64(c.AttnBlockQ))) + math.Abs(math.Log2(float64(bk)/float64(c.AttnBlockK)))
			fits := need <= mem
			switch {
			case fits && (!found || dist < bestDist || dist == bestDist && need < bestNeed):
				best, bestDist, bestNeed, found = next, dist, need, true
			case !found && need < bestNeed:
				best, bestNeed = next, need
			}
		}
	}
	if best.AttnBlockQ == c.AttnBlockQ && best.AttnBlockK == c.AttnBlockK {
		return c, "", false
	}
	return best, fmt.Sprintf("memory.attn_block_q: %d, attn_block_k: %d", best.AttnBlockQ, best.AttnBlockK), true
}

// moreWorkers doubles sp until the run fits (or up to 64x): on the CPU the
// new workers share this machine; on the GPU each brings its own device.
func moreWorkers(c Config, mem int64) (Config, string, bool) {
	next := c
	var tried Config
	for range maxSPDoublings {
		next.SP *= 2
		if next.Device == CPU {
			next.WorkersPerMachine *= 2
		}
		if next.Validate() != nil {
			break
		}
		tried = next
		if Plan(next).Fits(mem) {
			break
		}
	}
	if tried.SP == 0 {
		return c, "", false
	}
	what := fmt.Sprintf("parallel.workers: %d (sp %d)", tried.Workers(), tried.SP)
	if tried.Device == GPU {
		what = fmt.Sprintf("%d GPUs (sp %d)", tried.Workers(), tried.SP)
	}
	return tried, what, true
}

// lossChunks are the memory.loss_chunk values tried, largest first.
var lossChunks = []int{2048, 1024, 512, 256}

// smallerLossChunk picks the largest memory.loss_chunk below the one in use
// (0: the whole shard) that fits; failing any, the one with the least need.
// It applies only where the head's logits are the largest transient.
func smallerLossChunk(c Config, mem int64) (Config, string, bool) {
	r := Plan(c)
	if !strings.HasPrefix(r.TransientPiece, "head") {
		return c, "", false
	}
	cur := c.SeqLen / max(c.SP, 1)
	if c.LossChunk > 0 {
		cur = min(cur, c.LossChunk)
	}
	best, bestNeed := c, r.Need()
	for _, n := range lossChunks {
		if n >= cur {
			continue
		}
		next := c
		next.LossChunk = n
		need := Plan(next).Need()
		if need <= mem {
			best, bestNeed = next, need
			break
		}
		if need < bestNeed {
			best, bestNeed = next, need
		}
	}
	if best.LossChunk == c.LossChunk {
		return c, "", false
	}
	return best, fmt.Sprintf("memory.loss_chunk: %d", best.LossChunk), true
}
