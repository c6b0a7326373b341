package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadChatTemplate reads a chat template from path, which is one of:
//
//   - a tokenizer_config.json: its chat_template (a string, or a list of
//     {name, template} of which "default" is taken), bos_token and eos_token
//     (strings, or added tokens {"content": ...}); without chat_template, the
//     chat_template.jinja beside it, as newer transformers save it;
//   - a .jinja file (or any other file): the template, with bos_token and
//     eos_token from the tokenizer_config.json beside it, if there is one;
//   - a model folder: its chat_template.jinja with its tokenizer_config.json,
//     or its tokenizer_config.json alone.
//
// $VAR and ${VAR} in path are expanded as in a source's path.
func LoadChatTemplate(path string) (ChatTemplate, error) {
	path, err := ExpandPath(path)
	if err != nil {
		return ChatTemplate{}, fmt.Errorf("chat template: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ChatTemplate{}, fmt.Errorf("chat template: %w", err)
	}
	dir, cfgPath, jinja := filepath.Dir(path), path, ""
	switch {
	case fi.IsDir():
		dir, cfgPath = path, filepath.Join(path, "tokenizer_config.json")
		jinja = filepath.Join(path, "chat_template.jinja")
		if _, err := os.Stat(jinja); err != nil {
			jinja = ""
		}
	case filepath.Ext(path) != ".json":
		jinja, cfgPath = path, filepath.Join(dir, "tokenizer_config.json")
	}
	var t ChatTemplate
	if b, err := os.ReadFile(cfgPath); err == nil {
		if t, err = parseTokenizerConfig(b); err != nil {
			return ChatTemplate{}, fmt.Errorf("chat template: %s: %w", cfgPath, err)
		}
		t.From = cfgPath
	} else if jinja == "" || !errors.Is(err, os.ErrNotExist) {
		return ChatTemplate{}, fmt.Errorf("chat template: %w", err)
	}
	if jinja == "" && t.Text == "" { // a tokenizer_config.json without chat_template
		if p := filepath.Join(dir, "chat_template.jinja"); fileExists(p) {
			jinja = p
		}
	}
	if jinja != "" {
		b, err := os.ReadFile(jinja)
		if err != nil {
			return ChatTemplate{}, fmt.Errorf("chat template: %w", err)
		}
		t.Text, t.From = string(b), jinja
	}
	if strings.TrimSpace(t.Text) == "" {
		return ChatTemplate{}, fmt.Errorf("chat template: %s: no chat_template (nor a chat_template.jinja beside it)", t.From)
	}
	return t, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

// parseTokenizerConfig reads chat_template, bos_token and eos_token from a
// tokenizer_config.json.
func parseTokenizerConfig(b []byte) (ChatTemplate, error) {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return ChatTemplate{}, err
	}
	var t ChatTemplate
	var err error
	if t.BOS, err = tokenText(cfg.BOS); err != nil {
		return ChatTemplate{}, fmt.Errorf("bos_token: %w", err)
	}
	if t.EOS, err = tokenText(cfg.EOS); err != nil {
		return ChatTemplate{}, fmt.Errorf("eos_token: %w", err)
	}
	switch raw := cfg.ChatTemplate; {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		err = json.Unmarshal(raw, &t.Text)
	default:
		var named []struct{ Name, Template string }
		if err = json.Unmarshal(raw, &named); err != nil {
			return ChatTemplate{}, fmt.Errorf("chat_template: neither a string nor a list of {name, template}: %w", err)
		}
		var names []string
		for _, n := range named {
			if n.Name == "default" {
				t.Text = n.Template
			}
			names = append(names, n.Name)
		}
		if t.Text == "" {
			err = fmt.Errorf("chat_template: no template named \"default\" among %q", names)
		}
	}
	return t, err
}

// tokenText is a special token as tokenizer_config.json writes it: a string,
// an added token {"content": "..."}, or null.
func tokenText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var tok struct{ Content string }
	err := json.Unmarshal(raw, &tok)
	return tok.Content, err
}
