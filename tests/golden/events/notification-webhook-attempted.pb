
$5bcf71c7-0056-5921-b78e-8d3934d3e0fd˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Z#­"HTTP 429 Too Many Requests(x