package runlog

import (
	"encoding/json"
	"fmt"
)

// line is one step's metrics.jsonl line by field name: numbers and strings,
// a nested object's fields under "object.field" ("memory.weights").
type line struct {
	num map[string]float64
	str map[string]string
}

// lineOf decodes what a step writes to metrics.jsonl: v is anything that
// encodes as one of its lines (the trainer's StepStats), so fields the trainer
// adds later (eval_loss) come through, and what it omits stays absent.
func lineOf(v any) (line, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return line{}, fmt.Errorf("step metrics: %w", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return line{}, fmt.Errorf("step metrics: not a JSON object: %w", err)
	}
	l := line{num: map[string]float64{}, str: map[string]string{}}
	l.add("", raw)
	return l, nil
}

func (l line) add(prefix string, obj map[string]any) {
	for k, v := range obj {
		switch v := v.(type) {
		case float64:
			l.num[prefix+k] = v
		case string:
			l.str[prefix+k] = v
		case map[string]any:
			l.add(prefix+k+".", v)
		}
	}
}
