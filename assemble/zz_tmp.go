package assemble

import "github.com/imgfab/imgfab/bootloader"

type SignOptions struct{ Key, Cert, Enroll string }
type SignedResult struct{ Path, Subject string }
type signer struct{}

func loadSigner(p Plan) (*signer, error) { return nil, nil }
func (sg *signer) sign(setup bootloader.Setup, files []bootloader.FileSpec) ([]bootloader.FileSpec, []SignedResult, error) {
	return files, nil, nil
}
