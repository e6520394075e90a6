
$5bcf71c7-0056-5921-b78e-8d3934d3e0fd˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1R`
$949789c8-ec81-59e5-9ada-15fffdc6c063event-1$3b5f1f7e-8c2a-5d0e-9a41-6f0c2d7e1a90 *webhook