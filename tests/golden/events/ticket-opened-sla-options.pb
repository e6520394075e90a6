
$2772b299-7987-5be7-b0db-37e8c407d53b$949789c8-ec81-59e5-9ada-15fffdc6c063ò…ú»ÄîÔ:"req-1*dana.li@vendor.example2
crm-case-9:req-1Rè
ACME-001dana.li@vendor.examplerelationship-nps""NPS detractor follow-up: Acme Corp(2$9f56f49b-a219-5b63-8f7c-b1e3f51b071e:rnps-detractorBae@vendor.exampleBrenewals@vendor.exampleJÂ
Detractor playbook3https://wiki.vendor.example/cx/guides/nps-detractorCall within 48 hoursFind the root cause"=
First outreachThank you for your feedbackHello {{name}}*Listen first2"https://wiki.vendor.example/cx/faqR=Ä£ÄØÄºi"/
Äﬁ42Zemea-office"
APACapac-office(0Zaccount ACME-001 has no csmbsha256:4f2ah