
$e032275e-d338-5c25-86a0-650108ddba79˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1b