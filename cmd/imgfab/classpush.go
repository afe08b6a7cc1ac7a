package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/imgfab/imgfab/spec"
)

// pushSelection reads --push given with -f: "all", or a comma-separated list of targets, picking
// the classes' publish: entries to run after their builds.
func pushSelection(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "all" {
		return pushTargetNames(), nil
	}
	var sel []string
	for _, t := range strings.Split(v, ",") {
		t = strings.TrimSpace(t)
		if _, ok := pushTargets[t]; !ok {
			return nil, usagef("--push %q with -f: want all, or targets separated by commas (%s); the class file's publish: entries say where and how", v, strings.Join(pushTargetNames(), ", "))
		}
		if !slices.Contains(sel, t) {
			sel = append(sel, t)
		}
	}
	return sel, nil
}

// classPushes is the argument list of `imgfab push` for each publish: entry of class c (for
// platform pl) whose target is in sel, pushing disk. Parameters are push's flags in snake_case;
// oci's ref is its positional REGISTRY/REPO:TAG. Keys are sorted: the same file gives the same
// command lines.
func classPushes(c *spec.Class, pl spec.Platform, disk string, sel []string, asJSON bool) [][]string {
	var out [][]string
	for _, p := range c.ExpandPublish(pl) {
		if !slices.Contains(sel, p.Target) {
			continue
		}
		args := []string{p.Target, disk}
		if p.Target == "oci" {
			args = append(args, p.Params["ref"])
		}
		keys := make([]string, 0, len(p.Params))
		for k := range p.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p.Target == "oci" && k == "ref" {
				continue
			}
			args = append(args, "--"+strings.ReplaceAll(k, "_", "-")+"="+p.Params[k])
		}
		if asJSON {
			args = append(args, "--json")
		}
		out = append(out, args)
	}
	return out
}

// firstFile is the first output of a run that is a file (the disk its pushes upload).
func firstFile(r classRun) (string, bool) {
	for _, o := range r.plan.Outputs {
		if o.Path != "-" {
			return o.Path, true
		}
	}
	return "", false
}

// checkPushes makes sure, before anything is built, that --push with -f has something to do
// and a disk to do it with.
func checkPushes(path string, runs []classRun, sel []string) error {
	n := 0
	for _, r := range runs {
		pushes := classPushes(r.class, r.platform, "", sel, false)
		if len(pushes) == 0 {
			continue
		}
		if _, ok := firstFile(r); !ok {
			return usagef("%s: classes.%s: --push needs an output that is a file (not -)", r.class.Pos, r.class.Name)
		}
		n += len(pushes)
	}
	if n == 0 {
		return usagef("-f %s: --push %s: no publish: entry of the classes built has one of these targets", path, strings.Join(sel, ","))
	}
	return nil
}

// runClassPushes runs the pushes of one built class and platform, in file order; each push
// prints its own result, and reruns are safe (each target finds what a previous push made).
func runClassPushes(ctx context.Context, r classRun, sel []string, asJSON bool, stdout, stderr io.Writer) error {
	disk, _ := firstFile(r)
	for _, args := range classPushes(r.class, r.platform, disk, sel, asJSON) {
		if err := runPush(ctx, args, stdout, stderr); err != nil {
			return fmt.Errorf("class %s (%s): push %s: %w", r.class.Name, r.platform, args[0], err)
		}
	}
	return nil
}
