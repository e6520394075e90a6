
$fb3541e3-e6db-5192-a5a9-2f79a225c0e7˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Z8
.whsec_c2VjcmV0LXR3by1zZWNyZXQtdHdvLXNlY3JldA==˜ì¡È