package data

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// listTextDir walks root and lists its documents: one per matching file, or,
// with docPer "directory", one per directory that has a matching file.
//
// The walk skips, below root, hidden directories, directories named testdata
// and directories whose base name matches a glob of exclude (each with all
// below it); it skips non-regular files (symlinks included), files whose base
// name matches none of include (when include is not empty), and empty files,
// which have no text to learn from. The caller checked the exclude globs.
func listTextDir(root string, include, exclude []string, docPer string) ([]DocRef, error) {
	for _, g := range include {
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%s: include %q: %w", root, g, err)
		}
	}
	var byDir bool
	switch docPer {
	case "", "file":
	case "directory":
		byDir = true
	default:
		return nil, fmt.Errorf("%s: doc_per %q (want file or directory)", root, docPer)
	}
	fi, err := os.Stat(root)
	switch {
	case err != nil:
		return nil, err
	case !fi.IsDir():
		return nil, fmt.Errorf("%s: not a directory (text_dir wants one; use text_file)", root)
	}

	// WalkDir does not follow a root that is itself a symlink; walk its target.
	if li, err := os.Lstat(root); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		if root, err = filepath.EvalSymlinks(root); err != nil {
			return nil, err
		}
	}
	files, err := matchingFiles(root, include, exclude)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		if len(exclude) > 0 {
			return nil, fmt.Errorf("%s: no documents: no non-empty regular file outside the directories excluded by %q matches include %q", root, exclude, include)
		}
		return nil, fmt.Errorf("%s: no documents: no non-empty regular file matches include %q", root, include)
	}
	if !byDir {
		docs := make([]DocRef, len(files))
		for i, f := range files {
			docs[i] = DocRef{Name: f, kind: kindFile, path: f}
		}
		return docs, nil
	}

	group := map[string][]string{} // directory -> its files, sorted
	for _, f := range files {
		dir := filepath.Dir(f)
		group[dir] = append(group[dir], f)
	}
	dirs := make([]string, 0, len(group))
	for dir := range group {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	docs := make([]DocRef, len(dirs))
	for i, dir := range dirs {
		docs[i] = DocRef{Name: dir + string(filepath.Separator), kind: kindDir, path: dir, files: group[dir]}
	}
	return docs, nil
}

// matchingFiles returns the sorted paths of the non-empty regular files under
// root that listTextDir keeps.
func matchingFiles(root string, include, exclude []string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || matchAny(exclude, name)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || (len(include) > 0 && !matchAny(include, d.Name())) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() > 0 {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	return files, nil
}

// matchAny reports whether name matches one of the globs. The globs were
// checked up front, so Match cannot fail here.
func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}

// readFiles returns the texts of files, in order, separated by a newline.
func readFiles(files []string) ([]byte, error) {
	var text []byte
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			text = append(text, '\n')
		}
		text = append(text, b...)
	}
	return text, nil
}
