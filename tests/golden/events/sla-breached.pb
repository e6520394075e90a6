
$602dad8d-caf3-558b-a975-c13ffd5662c4$949789c8-ec81-59e5-9ada-15fffdc6c063˜ÉœÈ€”ï:"req-1*dana.li@vendor.example2
crm-case-9:req-1z,˜°É"˜ãºÉ*dana.li@vendor.example