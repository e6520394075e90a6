
$9c6e1f93-7b65-59b8-81ca-e8327373bb13˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1R·
$9f56f49b-a219-5b63-8f7c-b1e3f51b071erelationship-npsACME-001"sha256:4f2a*¯
rnps-detractorNPS detractor follow-up$949789c8-ec81-59e5-9ada-15fffdc6c063""NPS detractor follow-up: Acme Corp*dana.li@vendor.example2role:csmBae@vendor.exampleJrole:renewalsRå
Detractor playbook3https://wiki.vendor.example/cx/guides/nps-detractorCall within 48 hoursFind the root cause"=
First outreachThank you for your feedbackHello {{name}}*Listen first2"https://wiki.vendor.example/cx/faqZ€£€¯€¼i`B(
rnps-passiveno such key: partnershipHR
nps3