package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version describes this build, from what the Go toolchain recorded in it:
// the module version (a tag, "(devel)" for a local build), the commit, its
// time and whether the tree had changes, and the Go version.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "chatroom (no build information) " + runtime.Version()
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	v := "chatroom " + info.Main.Version
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if settings["vcs.modified"] == "true" {
			rev += "+changes"
		}
		v += fmt.Sprintf(" (commit %s", rev)
		if t := settings["vcs.time"]; t != "" {
			v += ", " + t
		}
		v += ")"
	}
	return v + " " + info.GoVersion
}
