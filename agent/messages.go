package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

type helloMessage struct {
	Protocol int    `json:"protocol"`
	Agent    string `json:"agent"`
}

type errorMessage struct {
	Message string `json:"message"`
}

type ttySize struct {
	Rows int `json:"rows"`
	Cols int `json:"cols"`
}

type execRequest struct {
	Argv  []string `json:"argv"`
	Shell *string  `json:"shell"`
	Env   []string `json:"env"`
	Cwd   string   `json:"cwd"`
	User  string   `json:"user"`
	TTY   *ttySize `json:"tty"`
	Stdin bool     `json:"stdin"`
}

type exitMessage struct {
	ExitCode int    `json:"exitCode"`
	Signal   string `json:"signal,omitempty"`
}

type signalMessage struct {
	Signal string `json:"signal"`
}

type windowMessage struct {
	Credit int `json:"credit"`
}

// decodeStrict parses a small control payload: one JSON object, no unknown fields, no trailing data.
func decodeStrict(payload []byte, v interface{}) error {
	if len(payload) > maxControlPayload {
		return fmt.Errorf("control payload of %d bytes exceeds %d", len(payload), maxControlPayload)
	}
	return decodeJSON(payload, v)
}

func decodeJSON(payload []byte, v interface{}) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON object")
	}
	return nil
}

func validSize(n int) bool { return n >= 1 && n <= 65535 }

// parseExecRequest decodes and validates an EXEC payload. EXEC payloads may be up to maxPayload.
func parseExecRequest(payload []byte) (execRequest, error) {
	var req execRequest
	if err := decodeJSON(payload, &req); err != nil {
		return req, fmt.Errorf("invalid exec request: %v", err)
	}
	if (req.Shell == nil) == (len(req.Argv) == 0) {
		return req, fmt.Errorf("invalid exec request: exactly one of argv and shell is required")
	}
	for _, s := range req.Argv {
		if strings.IndexByte(s, 0) >= 0 {
			return req, fmt.Errorf("invalid exec request: argv contains a NUL byte")
		}
	}
	if req.Shell != nil && strings.IndexByte(*req.Shell, 0) >= 0 {
		return req, fmt.Errorf("invalid exec request: shell contains a NUL byte")
	}
	for _, e := range req.Env {
		if strings.IndexByte(e, 0) >= 0 || strings.IndexByte(e, '=') <= 0 {
			return req, fmt.Errorf("invalid exec request: env entry %q is not KEY=VALUE", truncate(e, 60))
		}
	}
	if strings.IndexByte(req.Cwd, 0) >= 0 || strings.IndexByte(req.User, 0) >= 0 {
		return req, fmt.Errorf("invalid exec request: cwd or user contains a NUL byte")
	}
	if req.TTY != nil && (!validSize(req.TTY.Rows) || !validSize(req.TTY.Cols)) {
		return req, fmt.Errorf("invalid exec request: tty size %dx%d out of range", req.TTY.Rows, req.TTY.Cols)
	}
	return req, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
