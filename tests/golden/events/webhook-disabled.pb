
$fb3541e3-e6db-5192-a5a9-2f79a225c0e7˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1b'
%410 Gone answered to delivery 5d0c...