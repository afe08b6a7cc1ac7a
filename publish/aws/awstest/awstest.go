// Package awstest is a loopback stand-in for the AWS APIs that have no local server: the EBS
// direct APIs (REST-JSON) and the EC2 query API (XML) calls that `imgfab push aws` makes. Like
// net/http/httptest it is for tests only.
//
// It checks each request as AWS would and answers like AWS: the SigV4 signature (recomputed with
// the server's secret key; a wrong one gets 403), every PutSnapshotBlock's length and SHA-256,
// CompleteSnapshot's block count and linear aggregate checksum, the RegisterImage parameters
// (Architecture x86_64 or arm64, an arm64 AMI booting uefi, …) and ImportSnapshot's disk
// container. Each registered AMI keeps the parameters it was registered with (Server.Image), and
// DescribeImages answers with its architecture and boot mode. Every violation is also recorded;
// New fails the test at cleanup for any it did not expect (see TakeProblems).
package awstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/imgfab/imgfab/diskfmt"
)

// BlockSize is the EBS direct block size.
const BlockSize = 512 << 10

// Fault is what to do with one PutSnapshotBlock or S3 request attempt.
type Fault int

const (
	Serve Fault = 0  // serve it
	Drop  Fault = -1 // read half the body, then close the connection without an answer
	// any other value: answer with that HTTP status (500, 503) and an AWS error body
)

// Snapshot is a snapshot as the fake holds it.
type Snapshot struct {
	ID         string
	VolumeSize int64 // GiB
	Tags       map[string]string
	State      string // pending, completed, error
	Blocks     map[int32][]byte
	Token      string
	Timeout    int32
	polls      int
}

// Image is a registered AMI with the query parameters it was registered with (RegisterImage's
// Architecture, BootMode, BlockDeviceMapping.1.Ebs.SnapshotId, …, as received).
type Image struct {
	ID, Name string
	Params   url.Values
}

// Arch is the Architecture the image was registered with ("x86_64" or "arm64").
func (im *Image) Arch() string { return im.Params.Get("Architecture") }

// BootMode is the BootMode the image was registered with ("uefi", "legacy-bios", "uefi-preferred").
func (im *Image) BootMode() string { return im.Params.Get("BootMode") }

// Server is the fake. Set the hooks before the first request.
type Server struct {
	URL                          string
	AccessKey, SecretKey, Region string

	// BlockFault decides each PutSnapshotBlock attempt (attempt counts from 1 per block).
	BlockFault func(index int32, attempt int) Fault
	// Corrupt reports whether to flip a byte of a received block before its checksum is checked
	// (a block damaged in transit; AWS answers 400 and the fake records no problem for it).
	Corrupt func(index int32) bool
	// Latency is added to every PutSnapshotBlock answer (a stand-in for the round trip to AWS, for
	// benchmarks).
	Latency time.Duration
	// ReadObject returns an S3 object for ImportSnapshot.
	ReadObject func(bucket, key string) ([]byte, error)

	srv      *httptest.Server
	mu       sync.Mutex
	seq      int
	snaps    map[string]*Snapshot
	images   []*Image
	tasks    map[string]*importTask
	tokens   map[string]string
	calls    map[string]int
	attempts map[string]int
	zeroPuts int
	// problems has its own lock: handlers record a violation while holding mu.
	pmu      sync.Mutex
	problems []string
}

type importTask struct {
	id, snap, token, format, bucket, key string
	polls                                int
	tags                                 map[string]string
}

// New starts the fake on 127.0.0.1; it is closed, and any unexpected problem reported, at cleanup.
func New(t testing.TB) *Server {
	s := &Server{
		AccessKey: "AKIAIMGFABTEST", SecretKey: "imgfab-fake-secret-key", Region: "eu-west-1",
		snaps: map[string]*Snapshot{}, tasks: map[string]*importTask{}, tokens: map[string]string{},
		calls: map[string]int{}, attempts: map[string]int{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		s.srv.Close()
		for _, p := range s.TakeProblems() {
			t.Errorf("awstest: %s", p)
		}
	})
	return s
}

// Env is the environment for a client of this fake (credentials and region).
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region, "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// TakeProblems returns the protocol violations recorded so far and forgets them.
func (s *Server) TakeProblems() []string {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	p := s.problems
	s.problems = nil
	return p
}

// Calls is how many requests of an operation ("PutSnapshotBlock", "RegisterImage", …) were served
// successfully.
func (s *Server) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// ZeroPuts is how many PutSnapshotBlock requests carried an all-zero block.
func (s *Server) ZeroPuts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.zeroPuts
}

// Snapshot returns a copy of a snapshot, or nil.
func (s *Server) Snapshot(id string) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snaps[id]
	if sn == nil {
		return nil
	}
	c := *sn
	c.Blocks = map[int32][]byte{}
	for k, v := range sn.Blocks {
		c.Blocks[k] = v
	}
	return &c
}

// SnapshotCount is the number of snapshots made.
func (s *Server) SnapshotCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.snaps)
}

// Image returns the image registered under name, or nil.
func (s *Server) Image(name string) *Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, im := range s.images {
		if im.Name == name {
			return im
		}
	}
	return nil
}

// Images is how many images were registered.
func (s *Server) Images() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.images)
}

// Compare checks that the snapshot holds exactly disk's bytes (and zeros past them); it returns a
// description of the first difference, or "".
func (s *Server) Compare(id string, disk io.ReaderAt, size int64) string {
	sn := s.Snapshot(id)
	if sn == nil {
		return "no snapshot " + id
	}
	if sn.VolumeSize<<30 < size {
		return fmt.Sprintf("snapshot %s is %d GiB, disk %d bytes", id, sn.VolumeSize, size)
	}
	want := make([]byte, BlockSize)
	zero := make([]byte, BlockSize)
	for i := int32(0); int64(i)*BlockSize < size; i++ {
		clear(want)
		off := int64(i) * BlockSize
		n := min(BlockSize, size-off)
		if _, err := disk.ReadAt(want[:n], off); err != nil && err != io.EOF {
			return err.Error()
		}
		got := sn.Blocks[i]
		if got == nil {
			got = zero
		}
		if !bytes.Equal(got, want) {
			return fmt.Sprintf("block %d differs", i)
		}
	}
	for i := range sn.Blocks {
		if int64(i)*BlockSize >= size {
			return fmt.Sprintf("block %d is past the disk", i)
		}
	}
	return ""
}

func (s *Server) problem(format string, a ...any) string {
	msg := fmt.Sprintf(format, a...)
	s.pmu.Lock()
	s.problems = append(s.problems, msg)
	s.pmu.Unlock()
	return msg
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	isEBS := strings.HasPrefix(r.URL.Path, "/snapshots")
	service := "ec2"
	if isEBS {
		service = "ebs"
	}
	// A block fault is decided before the body is read (so Drop can cut it in half).
	if isEBS && r.Method == http.MethodPut && s.BlockFault != nil {
		idx := blockIndex(r.URL.Path)
		s.mu.Lock()
		k := r.URL.Path
		s.attempts[k]++
		a := s.attempts[k]
		s.mu.Unlock()
		switch f := s.BlockFault(idx, a); f {
		case Serve:
		case Drop:
			io.CopyN(io.Discard, r.Body, BlockSize/2)
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic("awstest: no hijacker")
			}
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		default:
			io.Copy(io.Discard, r.Body)
			ebsError(w, int(f), "InternalServerException", "injected fault")
			return
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if msg := s.checkSig(r, body, service); msg != "" {
		s.problem("%s %s: %s", r.Method, r.URL.Path, msg)
		if isEBS {
			ebsError(w, 403, "AccessDeniedException", msg)
		} else {
			ec2Error(w, 403, "AuthFailure", msg)
		}
		return
	}
	if isEBS {
		s.serveEBS(w, r, body)
	} else {
		s.serveEC2(w, r, body)
	}
}

// checkSig recomputes the SigV4 signature over the signed headers with the server's secret.
func (s *Server) checkSig(r *http.Request, body []byte, service string) string {
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return "no SigV4 Authorization header"
	}
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[0] != s.AccessKey || scope[2] != s.Region || scope[3] != service || scope[4] != "aws4_request" {
		return fmt.Sprintf("credential scope %q, want %s/DATE/%s/%s/aws4_request", fields["Credential"], s.AccessKey, s.Region, service)
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "bad X-Amz-Date"
	}
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	req, _ := http.NewRequest(r.Method, u.String(), nil)
	req.Host = r.Host
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host":
		case "content-length":
			req.ContentLength = int64(len(body))
		default:
			req.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	// PutSnapshotBlock is signed with UNSIGNED-PAYLOAD (the block's own checksum covers it).
	if h := r.Header.Get("X-Amz-Content-Sha256"); h == "UNSIGNED-PAYLOAD" {
		payload = h
	} else if h != "" && h != payload {
		return "X-Amz-Content-Sha256 does not match the body"
	}
	creds := aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, payload, service, s.Region, when); err != nil {
		return err.Error()
	}
	want := req.Header.Get("Authorization")
	if want != auth {
		return "signature does not match"
	}
	return ""
}

func blockIndex(path string) int32 {
	i := strings.LastIndex(path, "/")
	n, err := strconv.ParseInt(path[i+1:], 10, 32)
	if err != nil {
		return -1
	}
	return int32(n)
}

func ebsError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"Message": msg})
}

func (s *Server) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%017x", prefix, s.seq)
}

type ebsTag struct{ Key, Value string }

// serveEBS routes an EBS direct API request (its signature already checked) to its handler.
func (s *Server) serveEBS(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && len(parts) == 1:
		s.startSnapshot(w, body)
	case r.Method == http.MethodPut && len(parts) == 4 && parts[2] == "blocks":
		s.putSnapshotBlock(w, r, body, parts[1])
	case r.Method == http.MethodPost && len(parts) == 3 && parts[1] == "completion":
		s.completeSnapshot(w, r, parts[2])
	default:
		ebsError(w, 404, "ResourceNotFoundException", s.problem("unknown EBS request %s %s", r.Method, r.URL.Path))
	}
}

// startSnapshot serves StartSnapshot: a new pending snapshot, or the pending one its client token
// made.
func (s *Server) startSnapshot(w http.ResponseWriter, body []byte) {
	var in struct {
		VolumeSize  int64
		ClientToken string
		Description string
		Tags        []ebsTag
		Timeout     int32
	}
	if err := json.Unmarshal(body, &in); err != nil {
		ebsError(w, 400, "ValidationException", s.problem("StartSnapshot: body: %v", err))
		return
	}
	if in.VolumeSize < 1 || in.VolumeSize > 65536 {
		ebsError(w, 400, "ValidationException", s.problem("StartSnapshot: VolumeSize %d", in.VolumeSize))
		return
	}
	if in.ClientToken == "" || len(in.ClientToken) > 64 {
		ebsError(w, 400, "ValidationException", s.problem("StartSnapshot: ClientToken %q (want 1-64 chars)", in.ClientToken))
		return
	}
	if in.Timeout != 0 && (in.Timeout < 10 || in.Timeout > 4320) {
		ebsError(w, 400, "ValidationException", s.problem("StartSnapshot: Timeout %d minutes", in.Timeout))
		return
	}
	s.mu.Lock()
	sn := s.snaps[s.tokens[in.ClientToken]]
	if sn == nil || sn.State != "pending" {
		sn = &Snapshot{ID: s.nextID("snap"), VolumeSize: in.VolumeSize, Tags: map[string]string{}, State: "pending",
			Blocks: map[int32][]byte{}, Token: in.ClientToken, Timeout: in.Timeout}
		for _, t := range in.Tags {
			sn.Tags[t.Key] = t.Value
		}
		s.snaps[sn.ID] = sn
		s.tokens[in.ClientToken] = sn.ID
	}
	s.calls["StartSnapshot"]++
	out := map[string]any{"SnapshotId": sn.ID, "Status": "pending", "VolumeSize": sn.VolumeSize, "BlockSize": BlockSize, "Description": in.Description}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	json.NewEncoder(w).Encode(out)
}

// putSnapshotBlock serves PutSnapshotBlock: checks the block's index, length and SHA-256 (after
// the Corrupt hook), then stores it.
func (s *Server) putSnapshotBlock(w http.ResponseWriter, r *http.Request, body []byte, snapID string) {
	idx := blockIndex(r.URL.Path)
	op := fmt.Sprintf("PutSnapshotBlock %s block %d", snapID, idx)
	if s.Corrupt != nil && s.Corrupt(idx) && len(body) > 0 {
		body[len(body)/2] ^= 0xff
		if !blockChecks(r, body) {
			ebsError(w, 400, "ValidationException", "The checksum of the block data does not match the checksum provided")
			return
		}
	}
	s.mu.Lock()
	sn := s.snaps[snapID]
	s.mu.Unlock()
	if sn == nil || sn.State != "pending" {
		ebsError(w, 404, "ResourceNotFoundException", s.problem("%s: no pending snapshot", op))
		return
	}
	if idx < 0 || int64(idx) >= sn.VolumeSize<<30/BlockSize {
		ebsError(w, 400, "ValidationException", s.problem("%s: index out of range for %d GiB", op, sn.VolumeSize))
		return
	}
	if dl := r.Header.Get("X-Amz-Data-Length"); dl != strconv.Itoa(BlockSize) || len(body) != BlockSize {
		ebsError(w, 400, "ValidationException", s.problem("%s: Data-Length %q, body %d bytes, want %d", op, dl, len(body), BlockSize))
		return
	}
	if alg := r.Header.Get("X-Amz-Checksum-Algorithm"); alg != "SHA256" {
		ebsError(w, 400, "ValidationException", s.problem("%s: checksum algorithm %q", op, alg))
		return
	}
	if !blockChecks(r, body) {
		ebsError(w, 400, "ValidationException", s.problem("%s: checksum %q does not match the data", op, r.Header.Get("X-Amz-Checksum")))
		return
	}
	if p := r.Header.Get("X-Amz-Progress"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 100 {
			ebsError(w, 400, "ValidationException", s.problem("%s: progress %q", op, p))
			return
		}
	}
	time.Sleep(s.Latency)
	s.mu.Lock()
	if bytes.Count(body, []byte{0}) == len(body) {
		s.zeroPuts++
	}
	sn.Blocks[idx] = body
	s.calls["PutSnapshotBlock"]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Checksum", r.Header.Get("X-Amz-Checksum"))
	w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
	w.WriteHeader(201)
	io.WriteString(w, "{}")
}

// completeSnapshot serves CompleteSnapshot: checks the block count and the linear aggregate
// checksum against the blocks received, then starts completing the snapshot.
func (s *Server) completeSnapshot(w http.ResponseWriter, r *http.Request, snapID string) {
	op := "CompleteSnapshot " + snapID
	s.mu.Lock()
	sn := s.snaps[snapID]
	s.mu.Unlock()
	if sn == nil {
		ebsError(w, 404, "ResourceNotFoundException", s.problem("%s: no such snapshot", op))
		return
	}
	s.mu.Lock()
	var idx []int
	for i := range sn.Blocks {
		idx = append(idx, int(i))
	}
	sort.Ints(idx)
	agg := sha256.New()
	for _, i := range idx {
		d := sha256.Sum256(sn.Blocks[int32(i)])
		agg.Write(d[:])
	}
	s.mu.Unlock()
	want := base64.StdEncoding.EncodeToString(agg.Sum(nil))
	h := r.Header
	switch {
	case h.Get("X-Amz-Changedblockscount") != strconv.Itoa(len(idx)):
		ebsError(w, 400, "ValidationException", s.problem("%s: ChangedBlocksCount %q, %d blocks were written", op, h.Get("X-Amz-Changedblockscount"), len(idx)))
		return
	case h.Get("X-Amz-Checksum-Algorithm") != "SHA256" || h.Get("X-Amz-Checksum-Aggregation-Method") != "LINEAR":
		ebsError(w, 400, "ValidationException", s.problem("%s: algorithm %q aggregation %q", op, h.Get("X-Amz-Checksum-Algorithm"), h.Get("X-Amz-Checksum-Aggregation-Method")))
		return
	case h.Get("X-Amz-Checksum") != want:
		ebsError(w, 400, "ValidationException", s.problem("%s: aggregate checksum %q, want %q", op, h.Get("X-Amz-Checksum"), want))
		return
	}
	s.mu.Lock()
	sn.State = "completing"
	s.calls["CompleteSnapshot"]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(202)
	io.WriteString(w, `{"Status":"pending"}`)
}

func blockChecks(r *http.Request, body []byte) bool {
	sum := sha256.Sum256(body)
	return r.Header.Get("X-Amz-Checksum") == base64.StdEncoding.EncodeToString(sum[:])
}

func ec2Error(w http.ResponseWriter, code int, ecode, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>fake</RequestID></Response>`, ecode, xmlEscape(msg))
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *Server) ec2OK(w http.ResponseWriter, action, inner string) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><%sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>fake</requestId>%s</%sResponse>`, action, inner, action)
}

func tagSet(tags map[string]string) string {
	var keys []string
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("<tagSet>")
	for _, k := range keys {
		fmt.Fprintf(&b, "<item><key>%s</key><value>%s</value></item>", xmlEscape(k), xmlEscape(tags[k]))
	}
	b.WriteString("</tagSet>")
	return b.String()
}

// queryTags reads PREFIX.N.Key / PREFIX.N.Value.
func queryTags(q url.Values, prefix string) map[string]string {
	m := map[string]string{}
	for i := 1; q.Has(fmt.Sprintf("%s.%d.Key", prefix, i)); i++ {
		m[q.Get(fmt.Sprintf("%s.%d.Key", prefix, i))] = q.Get(fmt.Sprintf("%s.%d.Value", prefix, i))
	}
	return m
}

func (s *Server) snapshotXML(sn *Snapshot) string {
	progress := "0%"
	if sn.State == "completed" {
		progress = "100%"
	}
	return fmt.Sprintf("<item><snapshotId>%s</snapshotId><status>%s</status><progress>%s</progress><volumeSize>%d</volumeSize><ownerId>123456789012</ownerId>%s</item>",
		sn.ID, sn.State, progress, sn.VolumeSize, tagSet(sn.Tags))
}

// serveEC2 checks an EC2 query request (its signature already checked), counts it and routes it to
// the handler of its action; the handlers run with s.mu held.
func (s *Server) serveEC2(w http.ResponseWriter, r *http.Request, body []byte) {
	q, err := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || err != nil {
		ec2Error(w, 400, "InvalidRequest", s.problem("EC2 request %s %s: %v", r.Method, r.URL.Path, err))
		return
	}
	action := q.Get("Action")
	if q.Get("Version") != "2016-11-15" {
		ec2Error(w, 400, "InvalidRequest", s.problem("%s: Version %q", action, q.Get("Version")))
		return
	}
	fail := func(format string, a ...any) {
		ec2Error(w, 400, "InvalidParameterValue", s.problem(action+": "+format, a...))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	switch action {
	case "DescribeImages":
		s.describeImages(w, q, fail)
	case "DescribeSnapshots":
		s.describeSnapshots(w, q, fail)
	case "RegisterImage":
		s.registerImage(w, q, fail)
	case "ImportSnapshot":
		s.importSnapshot(w, q, fail)
	case "DescribeImportSnapshotTasks":
		s.describeImportSnapshotTasks(w, q, fail)
	case "CreateTags":
		s.createTags(w, q, fail)
	default:
		s.calls[action]--
		fail("unknown action")
	}
}

// failFunc answers an EC2 request with InvalidParameterValue and records the problem.
type failFunc func(format string, a ...any)

// describeImages serves DescribeImages: this account's images with the name filtered on.
func (s *Server) describeImages(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "DescribeImages"
	if q.Get("Owner.1") != "self" || q.Get("Filter.1.Name") != "name" || q.Get("Filter.1.Value.1") == "" {
		fail("want Owner.1=self and a name filter, got %v", q)
		return
	}
	var b strings.Builder
	b.WriteString("<imagesSet>")
	for _, im := range s.images {
		if im.Name == q.Get("Filter.1.Value.1") {
			fmt.Fprintf(&b, "<item><imageId>%s</imageId><name>%s</name><imageState>available</imageState><architecture>%s</architecture><bootMode>%s</bootMode><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>%s</snapshotId></ebs></item></blockDeviceMapping></item>",
				im.ID, xmlEscape(im.Name), xmlEscape(im.Arch()), xmlEscape(im.Params.Get("BootMode")), im.Params.Get("BlockDeviceMapping.1.Ebs.SnapshotId"))
		}
	}
	b.WriteString("</imagesSet>")
	s.ec2OK(w, action, b.String())
}

// describeSnapshots serves DescribeSnapshots: one snapshot by id (a completing one turns completed
// on its second poll), or this account's snapshots with a tag filtered on.
func (s *Server) describeSnapshots(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "DescribeSnapshots"
	var b strings.Builder
	b.WriteString("<snapshotSet>")
	if id := q.Get("SnapshotId.1"); id != "" {
		sn := s.snaps[id]
		if sn == nil {
			ec2Error(w, 400, "InvalidSnapshot.NotFound", "The snapshot '"+id+"' does not exist.")
			return
		}
		// Completing takes one poll, as on AWS where the state stays pending for a while.
		if sn.State == "completing" {
			sn.polls++
			if sn.polls > 1 {
				sn.State = "completed"
			}
		}
		view := *sn
		if view.State == "completing" {
			view.State = "pending"
		}
		b.WriteString(s.snapshotXML(&view))
	} else {
		if q.Get("Owner.1") != "self" || !strings.HasPrefix(q.Get("Filter.1.Name"), "tag:") {
			fail("want Owner.1=self and a tag filter, got %v", q)
			return
		}
		key := strings.TrimPrefix(q.Get("Filter.1.Name"), "tag:")
		var ids []string
		for id := range s.snaps {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			sn := s.snaps[id]
			if sn.Tags[key] == q.Get("Filter.1.Value.1") && sn.State != "completing" {
				b.WriteString(s.snapshotXML(sn))
			}
		}
	}
	b.WriteString("</snapshotSet>")
	s.ec2OK(w, action, b.String())
}

// registerImage serves RegisterImage: checks every parameter as EC2 does and registers the AMI,
// or answers InvalidAMIName.Duplicate.
func (s *Server) registerImage(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "RegisterImage"
	name := q.Get("Name")
	snapID := q.Get("BlockDeviceMapping.1.Ebs.SnapshotId")
	sn := s.snaps[snapID]
	boot := q.Get("BootMode")
	switch {
	case name == "" || len(name) > 128:
		fail("Name %q", name)
	case q.Get("Architecture") != "x86_64" && q.Get("Architecture") != "arm64":
		// EC2's names only: "amd64" or "aarch64" is an InvalidParameterValue on AWS too.
		fail("Architecture %q", q.Get("Architecture"))
	case q.Get("RootDeviceName") != "/dev/xvda" || q.Get("BlockDeviceMapping.1.DeviceName") != "/dev/xvda":
		fail("root device %q, mapping %q", q.Get("RootDeviceName"), q.Get("BlockDeviceMapping.1.DeviceName"))
	case sn == nil || sn.State != "completed":
		fail("snapshot %q is not a completed snapshot", snapID)
	case q.Get("BlockDeviceMapping.1.Ebs.VolumeType") != "gp3" || q.Get("BlockDeviceMapping.1.Ebs.DeleteOnTermination") != "true":
		fail("volume type %q, delete on termination %q", q.Get("BlockDeviceMapping.1.Ebs.VolumeType"), q.Get("BlockDeviceMapping.1.Ebs.DeleteOnTermination"))
	case q.Get("VirtualizationType") != "hvm" || q.Get("EnaSupport") != "true":
		fail("virtualization %q, ENA %q", q.Get("VirtualizationType"), q.Get("EnaSupport"))
	case boot != "uefi" && boot != "legacy-bios" && boot != "uefi-preferred":
		fail("BootMode %q", boot)
	case q.Get("Architecture") == "arm64" && boot != "uefi":
		// Graviton boots UEFI only: an arm64 AMI that asks for BIOS would never launch.
		fail("BootMode %q with Architecture arm64 (Graviton boots UEFI only)", boot)
	case q.Has("TpmSupport") && (q.Get("TpmSupport") != "v2.0" || boot == "legacy-bios"):
		fail("TpmSupport %q with boot mode %s", q.Get("TpmSupport"), boot)
	case q.Has("ImdsSupport") && q.Get("ImdsSupport") != "v2.0":
		fail("ImdsSupport %q", q.Get("ImdsSupport"))
	case q.Has("BlockDeviceMapping.1.Ebs.VolumeSize") && mustInt(q.Get("BlockDeviceMapping.1.Ebs.VolumeSize")) < sn.VolumeSize:
		fail("volume size %s GiB < snapshot %d GiB", q.Get("BlockDeviceMapping.1.Ebs.VolumeSize"), sn.VolumeSize)
	default:
		for _, im := range s.images {
			if im.Name == name {
				ec2Error(w, 400, "InvalidAMIName.Duplicate", "AMI name "+name+" is already in use by AMI "+im.ID)
				return
			}
		}
		im := &Image{ID: s.nextID("ami"), Name: name, Params: q}
		s.images = append(s.images, im)
		s.ec2OK(w, action, "<imageId>"+im.ID+"</imageId>")
	}
}

// importSnapshot serves ImportSnapshot: the task its client token made, or a new one once the
// disk container and tag specification check.
func (s *Server) importSnapshot(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "ImportSnapshot"
	format, bucket, key := q.Get("DiskContainer.Format"), q.Get("DiskContainer.UserBucket.S3Bucket"), q.Get("DiskContainer.UserBucket.S3Key")
	token := q.Get("ClientToken")
	for _, t := range s.tasks {
		if token != "" && t.token == token {
			s.ec2OK(w, action, "<importTaskId>"+t.id+"</importTaskId>")
			return
		}
	}
	if format != "RAW" && format != "VMDK" && format != "VHD" {
		fail("DiskContainer.Format %q", format)
		return
	}
	if bucket == "" || key == "" || s.ReadObject == nil {
		fail("bucket %q key %q", bucket, key)
		return
	}
	t := &importTask{id: s.nextID("import-snap"), token: token, format: format, bucket: bucket, key: key,
		tags: queryTags(q, "TagSpecification.1.Tag")}
	if q.Get("TagSpecification.1.ResourceType") != "import-snapshot-task" {
		fail("TagSpecification.1.ResourceType %q", q.Get("TagSpecification.1.ResourceType"))
		return
	}
	s.tasks[t.id] = t
	s.ec2OK(w, action, "<importTaskId>"+t.id+"</importTaskId><snapshotTaskDetail><status>active</status></snapshotTaskDetail>")
}

// describeImportSnapshotTasks serves DescribeImportSnapshotTasks: a task is active on its first
// poll and imports its object on the second (completed, or deleted with the reason).
func (s *Server) describeImportSnapshotTasks(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "DescribeImportSnapshotTasks"
	t := s.tasks[q.Get("ImportTaskId.1")]
	if t == nil {
		fail("no task %q", q.Get("ImportTaskId.1"))
		return
	}
	t.polls++
	status, msg := "active", ""
	if t.polls > 1 && t.snap == "" {
		// Import: read the object, as AWS does, and make the snapshot from its guest bytes.
		if err := s.importLocked(t); err != nil {
			status, msg = "deleted", err.Error()
		}
	}
	if t.snap != "" {
		status = "completed"
	}
	s.ec2OK(w, action, fmt.Sprintf("<importSnapshotTaskSet><item><importTaskId>%s</importTaskId><snapshotTaskDetail><status>%s</status><statusMessage>%s</statusMessage><progress>%d</progress><snapshotId>%s</snapshotId><format>%s</format></snapshotTaskDetail></item></importSnapshotTaskSet>",
		t.id, status, xmlEscape(msg), min(100, t.polls*50), t.snap, t.format))
}

// createTags serves CreateTags on a snapshot.
func (s *Server) createTags(w http.ResponseWriter, q url.Values, fail failFunc) {
	const action = "CreateTags"
	sn := s.snaps[q.Get("ResourceId.1")]
	if sn == nil {
		fail("no resource %q", q.Get("ResourceId.1"))
		return
	}
	for k, v := range queryTags(q, "Tag") {
		sn.Tags[k] = v
	}
	s.ec2OK(w, action, "<return>true</return>")
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// importLocked reads the task's object and makes the snapshot (s.mu held).
func (s *Server) importLocked(t *importTask) error {
	obj, err := s.ReadObject(t.bucket, t.key)
	if err != nil {
		return fmt.Errorf("ClientError: reading s3://%s/%s: %v", t.bucket, t.key, err)
	}
	var disk interface {
		io.ReaderAt
		Size() int64
	}
	if t.format == "RAW" {
		disk = bytes.NewReader(obj)
	} else {
		var img diskfmt.Image
		img, err = diskfmt.OpenReaderAt(bytes.NewReader(obj), int64(len(obj)))
		if err == nil && !strings.EqualFold(strings.TrimSuffix(img.Format(), "-dynamic"), t.format) {
			err = fmt.Errorf("object is %s, not %s", img.Format(), t.format)
		}
		disk = img
	}
	if err != nil {
		return fmt.Errorf("ClientError: disk validation failed: %v", err)
	}
	size := disk.Size()
	sn := &Snapshot{ID: s.nextID("snap"), VolumeSize: (size + 1<<30 - 1) >> 30, Tags: map[string]string{}, State: "completed", Blocks: map[int32][]byte{}}
	zero := make([]byte, BlockSize)
	for i := int32(0); int64(i)*BlockSize < size; i++ {
		b := make([]byte, BlockSize)
		off := int64(i) * BlockSize
		if _, err := disk.ReadAt(b[:min(BlockSize, size-off)], off); err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(b, zero) {
			sn.Blocks[i] = b
		}
	}
	s.snaps[sn.ID] = sn
	t.snap = sn.ID
	return nil
}
