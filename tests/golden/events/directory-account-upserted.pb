
$3ef05a7a-c35d-5c5b-b9da-e8bf9499e184˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Rp
n
ACME-001	Acme CorpEMEA"
enterprise*&
account_executiveae@vendor.example*
csmdana.li@vendor.example