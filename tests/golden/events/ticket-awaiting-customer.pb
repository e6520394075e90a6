
$2772b299-7987-5be7-b0db-37e8c407d53b$949789c8-ec81-59e5-9ada-15fffdc6c063˜ÉœÈ€”ï:"req-1*dana.li@vendor.example2
crm-case-9:req-1’
waiting for their logs