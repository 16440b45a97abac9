package simulator

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// controlFunc handles one method of a /_simulator/ path; an error is
// answered 400 with its text.
type controlFunc func(s *Server, w http.ResponseWriter, r *http.Request) error

// controlRoutes is the control surface: path, then method. It is never
// counted, throttled or faulted.
var controlRoutes = map[string]map[string]controlFunc{
	"/_simulator/stats": {http.MethodGet: (*Server).ctlStats},
	"/_simulator/faults": {
		http.MethodGet:    (*Server).ctlFaults,
		http.MethodPost:   (*Server).ctlSetFault,
		http.MethodDelete: (*Server).ctlClearFaults,
	},
	"/_simulator/rotate":           {http.MethodPost: (*Server).ctlRotate},
	"/_simulator/reset-stats":      {http.MethodPost: (*Server).ctlResetStats},
	"/_simulator/revoke-tokens":    {http.MethodPost: (*Server).ctlRevoke},
	"/_simulator/spot-termination": {http.MethodPost: (*Server).ctlSpot},
	"/_simulator/public-ip":        {http.MethodPost: (*Server).ctlPublicIP},
	"/_simulator/hardened-only":    {http.MethodPost: (*Server).ctlHardened},
	"/_simulator/rate-limit":       {http.MethodPost: (*Server).ctlRateLimit},
}

// maxControlBody bounds a fault body.
const maxControlBody = 1 << 16

func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	methods, ok := controlRoutes[r.URL.Path]
	if !ok {
		writeText(w, http.StatusNotFound, "unknown control path "+r.URL.Path+"\n")
		return
	}
	handle, ok := methods[r.Method]
	if !ok {
		allowed := slices.Sorted(maps.Keys(methods))
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeText(w, http.StatusMethodNotAllowed, "allowed: "+strings.Join(allowed, ", ")+"\n")
		return
	}
	if err := handle(s, w, r); err != nil {
		writeText(w, http.StatusBadRequest, err.Error()+"\n")
	}
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	writeBody(w, http.StatusOK, ctypeJSON, append(b, '\n'))
	return nil
}

func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) ctlStats(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, s.Stats())
}

func (s *Server) ctlFaults(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, s.Faults())
}

// ctlSetFault reads a Fault from the body for the prefix in ?prefix=.
func (s *Server) ctlSetFault(w http.ResponseWriter, r *http.Request) error {
	var f Fault
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("set fault: %w", err)
	}
	s.SetFault(r.URL.Query().Get("prefix"), f)
	return noContent(w)
}

// ctlClearFaults clears the fault of ?prefix= when given, else all.
func (s *Server) ctlClearFaults(w http.ResponseWriter, r *http.Request) error {
	if q := r.URL.Query(); q.Has("prefix") {
		s.SetFault(q.Get("prefix"), Fault{})
		return noContent(w)
	}
	s.ClearFaults()
	return noContent(w)
}

func (s *Server) ctlRotate(w http.ResponseWriter, _ *http.Request) error {
	s.RotateCredentials()
	return noContent(w)
}

func (s *Server) ctlResetStats(w http.ResponseWriter, _ *http.Request) error {
	s.ResetStats()
	return noContent(w)
}

func (s *Server) ctlRevoke(w http.ResponseWriter, _ *http.Request) error {
	s.RevokeTokens()
	return noContent(w)
}

// ctlSpot sets ?time= (RFC 3339), or clears it when empty.
func (s *Server) ctlSpot(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query().Get("time")
	var t time.Time
	if v != "" {
		var err error
		if t, err = time.Parse(time.RFC3339, v); err != nil {
			return fmt.Errorf("spot termination: time %q: want RFC 3339 "+
				"such as 2026-12-04T22:09:00Z, or empty to clear", v)
		}
	}
	s.SetSpotTermination(t)
	return noContent(w)
}

// ctlPublicIP binds ?ip=, or unbinds when empty.
func (s *Server) ctlPublicIP(w http.ResponseWriter, r *http.Request) error {
	ip := r.URL.Query().Get("ip")
	if _, err := netip.ParseAddr(ip); ip != "" && err != nil {
		return fmt.Errorf("public ip: %q: want an IP address, or empty to unbind", ip)
	}
	s.BindPublicIP(ip)
	return noContent(w)
}

// ctlHardened switches hardened-only mode with ?on=true|false.
func (s *Server) ctlHardened(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query().Get("on")
	on, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("hardened only: on %q: want true or false", v)
	}
	s.SetHardenedOnly(on)
	return noContent(w)
}

// ctlRateLimit sets ?rps= (0: unlimited) and ?burst= (absent or 0: the
// default).
func (s *Server) ctlRateLimit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	rps, err := strconv.ParseFloat(q.Get("rps"), 64)
	if err != nil || !(rps >= 0) {
		return fmt.Errorf("rate limit: rps %q: want a number, 0 or more", q.Get("rps"))
	}
	burst := 0
	if v := q.Get("burst"); v != "" {
		if burst, err = strconv.Atoi(v); err != nil || burst < 0 {
			return fmt.Errorf("rate limit: burst %q: want an integer, 0 or more", v)
		}
	}
	s.SetRateLimit(rps, burst)
	return noContent(w)
}
