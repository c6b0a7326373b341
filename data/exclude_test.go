package data_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/torusml/torus/data"
)

func TestOpenCorpusTextDirExclude(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cmd") // the root itself is never excluded
	for name, content := range map[string]string{
		"a.go":                  "package a",
		"cmd/tool/main.go":      "package main",
		"pkg/cmd/c.go":          "package cmd",
		"pkg/cmdline/l.go":      "package cmdline", // cmdline is not cmd
		"pkg/cmd.go":            "package pkg",     // a file named like an excluded directory
		"pkg/vendor/v/v.go":     "package v",
		"pkg/gen_x/g.go":        "package gen",
		"pkg/gen.go":            "package pkg2",
		"internal/vendor.go":    "package internal",
		"internal/vendorx/w.go": "package w",
	} {
		writeFile(t, root, name, content)
	}
	file := func(rel string) string { return filepath.Join(root, rel) }
	dir := func(rel string) string { return filepath.Join(root, rel) + string(filepath.Separator) }
	tests := []struct {
		name      string
		exclude   []string
		docPer    string
		wantNames []string
	}{
		{
			name:    "none",
			exclude: nil,
			wantNames: []string{file("a.go"), file("cmd/tool/main.go"), file("internal/vendor.go"), file("internal/vendorx/w.go"),
				file("pkg/cmd.go"), file("pkg/cmd/c.go"), file("pkg/cmdline/l.go"), file("pkg/gen.go"), file("pkg/gen_x/g.go"), file("pkg/vendor/v/v.go")},
		},
		{
			name:    "cmd and vendor",
			exclude: []string{"cmd", "vendor"},
			wantNames: []string{file("a.go"), file("internal/vendor.go"), file("internal/vendorx/w.go"),
				file("pkg/cmd.go"), file("pkg/cmdline/l.go"), file("pkg/gen.go"), file("pkg/gen_x/g.go")},
		},
		{
			name:      "globs, by directory",
			exclude:   []string{"cmd*", "vendor?", "gen_*"},
			docPer:    "directory",
			wantNames: []string{dir("."), dir("internal"), dir("pkg"), dir("pkg/vendor/v")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := data.OpenCorpus([]data.SourceConfig{{Type: "text_dir", Path: root, Include: []string{"*.go"}, Exclude: tt.exclude, DocPer: tt.docPer}})
			if err != nil {
				t.Fatal(err)
			}
			names, _ := readAll(t, c)
			if !slices.Equal(names, tt.wantNames) {
				t.Errorf("names = %q\nwant %q", names, tt.wantNames)
			}
		})
	}
}

func TestOpenCorpusExcludeErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "only/a.go", "package a")
	jsonl := writeFile(t, dir, "docs.jsonl", `{"text":"t"}`+"\n")
	text := writeFile(t, dir, "a.txt", "text")
	tests := []struct {
		name string
		src  data.SourceConfig
		want []string // substrings of the error; nil: no error
	}{
		{"bad glob", data.SourceConfig{Type: "text_dir", Path: dir, Exclude: []string{"cmd", "[vendor"}}, []string{dir, `exclude "[vendor"`}},
		{"bad glob, jsonl", data.SourceConfig{Type: "jsonl", Path: jsonl, Exclude: []string{"a\\"}}, []string{jsonl, `exclude "a\\`}},
		{"bad glob, text_file", data.SourceConfig{Type: "text_file", Path: text, Exclude: []string{"[]"}}, []string{text, `exclude "[]"`}},
		{"everything excluded", data.SourceConfig{Type: "text_dir", Path: dir, Include: []string{"*.go"}, Exclude: []string{"only"}}, []string{dir, "no documents", `["only"]`}},
		{"jsonl ignores it", data.SourceConfig{Type: "jsonl", Path: jsonl, Exclude: []string{"*"}}, nil},
		{"text_file ignores it", data.SourceConfig{Type: "text_file", Path: text, Exclude: []string{"*"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := data.OpenCorpus([]data.SourceConfig{tt.src})
			if tt.want == nil {
				if err != nil || c.Len() != 1 {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("OpenCorpus gave %d documents and no error", c.Len())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "data: ") {
				t.Errorf("error %q does not begin with %q", msg, "data: ")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}
